"""Molmo v1 image preprocessing and prompt layout, as VideoMolmo's model was trained on. No ROS.

Molmo (and VideoMolmo, built on Molmo-7B-D-0924) sees a frame as one low-resolution global view
plus a grid of overlapping high-resolution crops, all 336 px squares cut into 14 px patches. The
crops overlap by a margin of 4 patches on each inner side; the margins give every crop context at
its borders, but only the patches inside the margins become LLM tokens, so the crops' pooled tokens
tile the resized frame exactly once. After the vision encoder, 2x2 patches are pooled into one
token: 12 x 12 = 144 per crop.

The LLM input is `[bos] + image tokens + " User: {prompt} Assistant:"`. The image tokens are the
global view (`<im_start>`, 12 rows of 12 `<im_patch>` and an `<im_col>`, `<im_end>`) and then the
crops joined into one high-resolution grid laid out the same way. `image_input_idx` tells the model
where each pooled crop token goes: its `<im_patch>` position in `input_ids`, or `NO_TOKEN` for the
margin tokens that another crop covers.

Everything runs as torch operations on the frame's device, so GPU frames stay on the GPU. The
layout and values match the upstream Molmo processor (resizing, padding, normalisation, the tiling
rule, the token order and the `image_masks` convention), which the released weights expect.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)

# `image_input_idx` for a pooled crop token that goes nowhere (upstream's value; the model
# only checks for negative values).
NO_TOKEN = -100
# `image_masks` row that upstream appends after the crops' rows (see `preprocess_frame`).
MASK_FILLER = -1.0

IM_START, IM_END, IM_PATCH, IM_COL = "<im_start>", "<im_end>", "<im_patch>", "<im_col>"


@dataclass(frozen=True)
class MolmoImageSettings:
    """Molmo-7B-D's preprocessing configuration (the defaults are the released ones).

    Crops are square and pooling is square in Molmo v1, so one size stands for both sides.
    """

    base_image_size: int = 336  # side of the global view and of every crop, in pixels
    patch_size: int = 14  # ViT patch side, in pixels
    max_crops: int = 12  # high-resolution crops at most (the global view comes on top)
    overlap_margins: tuple[int, int] = (4, 4)  # patches dropped at a crop's (top/left, bottom/right) inner sides
    pooling: int = 2  # pooled window side, in patches (2x2 -> one LLM token)
    # OpenAI CLIP normalisation (transformers.image_utils.OPENAI_CLIP_MEAN / _STD).
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    pad_value: float = 0.0  # fill of the letterbox, in [0, 1] pixel units, before normalisation

    def __post_init__(self):
        # The token layout assumes pooled windows never straddle a margin or a crop edge, which
        # holds for the released configuration.
        sizes = (self.crop_patches, *self.overlap_margins)
        if self.base_image_size % self.patch_size or any(size % self.pooling for size in sizes):
            raise ValueError(f"crop side and overlap margins must be whole pooling windows: {self}")
        if self.window_patches <= 0:
            raise ValueError(f"overlap margins leave no crop window: {self}")

    @property
    def crop_patches(self) -> int:
        """Patches along a crop side (24)."""
        return self.base_image_size // self.patch_size

    @property
    def image_token_length(self) -> int:
        """Pooled tokens along a crop side (12; upstream's image_token_length_w and _h)."""
        return self.crop_patches // self.pooling

    @property
    def tokens_per_crop(self) -> int:
        """Pooled tokens per crop (144): the width of `image_input_idx`."""
        return self.image_token_length**2

    @property
    def patches_per_crop(self) -> int:
        """ViT patches per crop (576)."""
        return self.crop_patches**2

    @property
    def patch_dim(self) -> int:
        """Values per patch (588): pixel rows, then columns, then RGB."""
        return self.patch_size**2 * 3

    @property
    def window_patches(self) -> int:
        """Patches along the part of a crop inside its margins (16): the stride between crops."""
        return self.crop_patches - sum(self.overlap_margins)

    @property
    def margin_pixels(self) -> int:
        """Both margins together, in pixels (112)."""
        return sum(self.overlap_margins) * self.patch_size


MOLMO_V1 = MolmoImageSettings()


def select_tiling(height: float, width: float, patch_size: int, max_crops: int) -> tuple[int, int]:
    """The (rows, cols) grid of `patch_size` tiles, at most `max_crops` tiles, for an image.

    Upstream's rule: the grid that covers the image with the least upscaling; when every grid
    would have to shrink it, the one that shrinks it least. Ties go to fewer tiles, then fewer
    rows. The float32 arithmetic and the non-positive sizes of tiny images behave as upstream.
    """
    tilings = sorted(
        ((i, j) for i in range(1, max_crops + 1) for j in range(1, max_crops + 1) if i * j <= max_crops),
        key=lambda t: (t[0] * t[1], t[0]),
    )
    candidates = np.array(tilings, dtype=np.int32)
    with np.errstate(divide="ignore"):
        scales = (candidates * patch_size).astype(np.float32) / np.array([height, width], dtype=np.float32)
    scale = scales.min(axis=-1)
    index = scale.argmax() if np.all(scale < 1) else np.where(scale < 1, 10e9, scale).argmin()
    return int(candidates[index][0]), int(candidates[index][1])


def crop_tiling(height: int, width: int, settings: MolmoImageSettings = MOLMO_V1) -> tuple[int, int]:
    """The (rows, cols) crop grid Molmo uses for a height x width frame.

    The tiling is chosen for the frame without the outer margins, in units of a crop's inner
    window (224 px), since only the windows tile the frame.
    """
    margin = settings.margin_pixels
    window = settings.window_patches * settings.patch_size
    return select_tiling(height - margin, width - margin, window, settings.max_crops)


def resize_and_pad(
    pixels: torch.Tensor, size: tuple[int, int], pad_value: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Letterbox 3 x H x W float pixels in [0, 1] into `size` (height, width), keeping the aspect.

    Bilinear with antialiasing in float32 (what upstream's torchvision resize runs), clipped to
    [0, 1], centred; returns the image and the bool mask of real (not padded) pixels.
    """
    height, width = pixels.shape[-2:]
    target_h, target_w = size
    scale = min(np.float32(target_h) / np.float32(height), np.float32(target_w) / np.float32(width))
    # At least one pixel: upstream cannot resize extreme aspect ratios (e.g. 1 x 2000) at all.
    scaled_h = max(1, int(np.float32(height) * scale))
    scaled_w = max(1, int(np.float32(width) * scale))
    resized = F.interpolate(pixels[None], (scaled_h, scaled_w), mode="bilinear", align_corners=False, antialias=True)
    top, left = (target_h - scaled_h) // 2, (target_w - scaled_w) // 2
    padding = (left, target_w - scaled_w - left, top, target_h - scaled_h - top)
    image = F.pad(resized[0].clamp(0.0, 1.0), padding, value=pad_value)
    mask = F.pad(torch.ones((scaled_h, scaled_w), dtype=torch.bool, device=pixels.device), padding)
    return image, mask


def patchify(crops: torch.Tensor, patch_size: int) -> torch.Tensor:
    """N x C x S x S crops -> N x (S/p)^2 x (p*p*C) patches: patches row-major, and inside a
    patch pixel rows, then columns, then channels (the order the ViT's patch embedding expects)."""
    n, channels, side, _ = crops.shape
    grid = side // patch_size
    patches = crops.reshape(n, channels, grid, patch_size, grid, patch_size).permute(0, 2, 4, 3, 5, 1)
    return patches.reshape(n, grid * grid, patch_size * patch_size * channels)


@dataclass(frozen=True)
class PreprocessedFrame:
    """One frame as Molmo's vision encoder takes it (n_crops = 1 + rows * cols)."""

    images: torch.Tensor  # n_crops x 576 x 588 float32, CLIP-normalised; global view first
    image_masks: torch.Tensor  # n_crops x 576 float32: fraction of real pixels per patch (see below)
    tiling: tuple[int, int]  # (rows, cols) of the high-resolution crops

    @property
    def n_crops(self) -> int:
        return self.images.shape[0]


def preprocess_frame(image: np.ndarray | torch.Tensor, settings: MolmoImageSettings = MOLMO_V1) -> PreprocessedFrame:
    """H x W x 3 uint8 RGB (numpy, or torch on any device) -> the global view and the crops.

    The crops come from the frame letterboxed to rows x cols inner windows plus the outer
    margins, cut every 224 px (the window) into 336 px squares, row by row. `image_masks` follows
    upstream exactly: the crops' rows first, then one row of -1; the global view has no row of
    its own, so row k belongs to crop k + 1 while the model adds it to image k. The weights were
    trained with this layout, so it is kept.
    """
    pixels = _to_float_chw(image)
    tiling = crop_tiling(pixels.shape[1], pixels.shape[2], settings)
    crops, crop_masks = _high_res_crops(pixels, tiling, settings)
    base = settings.base_image_size
    global_view, _ = resize_and_pad(pixels, (base, base), settings.pad_value)
    images = torch.cat([patchify(_normalize(global_view, settings)[None], settings.patch_size), crops])
    filler = crop_masks.new_full((1, settings.patches_per_crop), MASK_FILLER)
    return PreprocessedFrame(images, torch.cat([crop_masks, filler]), tiling)


def _to_float_chw(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x H x W float32 in [0, 1], on the image's device."""
    pixels = torch.from_numpy(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else image
    if pixels.dtype != torch.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3 or 0 in pixels.shape:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {tuple(pixels.shape)} {pixels.dtype}")
    return pixels.permute(2, 0, 1).to(torch.float32) / 255.0


def _normalize(pixels: torch.Tensor, settings: MolmoImageSettings) -> torch.Tensor:
    """CLIP normalisation of 3 x H x W pixels; applied after padding, as upstream does."""
    mean = torch.tensor(settings.image_mean, dtype=pixels.dtype, device=pixels.device)[:, None, None]
    std = torch.tensor(settings.image_std, dtype=pixels.dtype, device=pixels.device)[:, None, None]
    return (pixels - mean) / std


def _high_res_crops(
    pixels: torch.Tensor, tiling: tuple[int, int], settings: MolmoImageSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows x cols overlapping crops, patchified, and their per-patch real-pixel fractions."""
    rows, cols = tiling
    stride = settings.window_patches * settings.patch_size
    size = (rows * stride + settings.margin_pixels, cols * stride + settings.margin_pixels)
    letterboxed, mask = resize_and_pad(pixels, size, settings.pad_value)
    stacked = torch.cat([_normalize(letterboxed, settings), mask[None].to(pixels.dtype)])
    side = settings.base_image_size
    # 4 x rows x cols x side x side -> (rows * cols) x 4 x side x side, row-major over the grid.
    crops = stacked.unfold(1, side, stride).unfold(2, side, stride).permute(1, 2, 0, 3, 4)
    crops = crops.reshape(rows * cols, 4, side, side)
    patches = patchify(crops[:, :3], settings.patch_size)
    masks = patchify(crops[:, 3:], settings.patch_size).mean(dim=-1)
    return patches, masks


@dataclass(frozen=True)
class ImageTokenIds:
    """The ids of Molmo's image special tokens in a tokenizer."""

    start: int
    end: int
    patch: int
    col: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "ImageTokenIds":
        """Looks the four tokens up; a tokenizer without them cannot feed Molmo."""
        names = (IM_START, IM_END, IM_PATCH, IM_COL)
        ids = [tokenizer.convert_tokens_to_ids(name) for name in names]
        missing = [n for n, i in zip(names, ids, strict=True) if not isinstance(i, int) or i == tokenizer.unk_token_id]
        if missing:
            raise ValueError(f"tokenizer lacks Molmo's image tokens {missing}")
        return cls(*ids)


def high_res_grid(tiling: tuple[int, int], settings: MolmoImageSettings = MOLMO_V1) -> tuple[int, int]:
    """(rows, cols) of pooled tokens of the joined crops: the windows plus the two outer margins."""
    window = settings.window_patches // settings.pooling
    margins = sum(settings.overlap_margins) // settings.pooling
    return tiling[0] * window + margins, tiling[1] * window + margins


def image_token_count(tiling: tuple[int, int], settings: MolmoImageSettings = MOLMO_V1) -> int:
    """Length of the image token sequence, special tokens included (740 for a 640 x 480 frame)."""
    rows, cols = high_res_grid(tiling, settings)
    side = settings.image_token_length
    return (2 + side * (side + 1)) + (2 + rows * (cols + 1))


@dataclass(frozen=True)
class ImageTokenLayout:
    """The image token sequence and where each pooled crop token goes in it."""

    tokens: np.ndarray  # (n_image_tokens,) int64 token ids
    image_input_idx: np.ndarray  # n_crops x 144 int64: index into `tokens`, or NO_TOKEN


def image_token_layout(
    tiling: tuple[int, int], ids: ImageTokenIds, settings: MolmoImageSettings = MOLMO_V1
) -> ImageTokenLayout:
    """Global view, then the joined crops, each as <im_start>, rows of <im_patch> closed by
    <im_col>, <im_end>.

    The pooled token (r, c) of crop (i, j) sits at row i * 8 + r, column j * 8 + c of the joined
    grid; it has a place only inside the crop's window, extended by its margin on the sides where
    the crop touches the frame's border; the rest (overlap another crop owns) gets NO_TOKEN.
    """
    side = settings.image_token_length
    global_tokens = _grid_tokens(side, side, ids)
    rows, cols = high_res_grid(tiling, settings)
    crop_tokens = _grid_tokens(rows, cols, ids)
    grid = _grid_positions(rows, cols) + len(global_tokens)
    row_at, row_ok = _crop_axis(tiling[0], settings)
    col_at, col_ok = _crop_axis(tiling[1], settings)
    # tiles_r x tiles_c x side x side positions, then one row of 144 per crop, row-major.
    positions = grid[row_at[:, None, :, None], col_at[None, :, None, :]]
    valid = row_ok[:, None, :, None] & col_ok[None, :, None, :]
    crop_idx = np.where(valid, positions, NO_TOKEN).reshape(-1, settings.tokens_per_crop)
    return ImageTokenLayout(
        np.concatenate([global_tokens, crop_tokens]),
        np.concatenate([_grid_positions(side, side).reshape(1, -1), crop_idx]),
    )


def _grid_tokens(rows: int, cols: int, ids: ImageTokenIds) -> np.ndarray:
    row = [ids.patch] * cols + [ids.col]
    return np.array([ids.start, *(row * rows), ids.end], dtype=np.int64)


def _grid_positions(rows: int, cols: int) -> np.ndarray:
    """rows x cols indices of the <im_patch> tokens in `_grid_tokens(rows, cols)`."""
    return 1 + np.arange(rows)[:, None] * (cols + 1) + np.arange(cols)[None, :]


def _crop_axis(tiles: int, settings: MolmoImageSettings) -> tuple[np.ndarray, np.ndarray]:
    """Along one axis, tiles x 12: each pooled crop position's index in the joined grid, and
    whether the position has a token of its own."""
    side, pool = settings.image_token_length, settings.pooling
    window = settings.window_patches // pool
    lead = settings.overlap_margins[0] // pool
    tile, local = np.arange(tiles)[:, None], np.arange(side)[None, :]
    first = np.where(tile == 0, 0, lead)
    stop = np.where(tile == tiles - 1, side, lead + window)
    return tile * window + local, (local >= first) & (local < stop)


def user_turn(prompt: str) -> str:
    """Molmo v1's single-turn chat text (its processor's "role" format, leading space included)."""
    return f" User: {prompt} Assistant:"


def build_model_inputs(
    tokenizer, prompt: str, frame: PreprocessedFrame, settings: MolmoImageSettings = MOLMO_V1
) -> dict[str, torch.Tensor]:
    """The unbatched inputs of Molmo's forward for one frame and one prompt, on the frame's device.

    - input_ids: (seq,) int64 = [bos] + image tokens + tokens of `user_turn(prompt)`; bos is the
      tokenizer's bos, or its eos when it has none (Qwen2: <|endoftext|>), as upstream.
    - images: n_crops x 576 x 588 float32; image_masks: n_crops x 576 float32 (see `preprocess_frame`).
    - image_input_idx: n_crops x 144 int64 positions in input_ids, NO_TOKEN (-100) where none.
    Add a leading batch dimension for the model.
    """
    layout = image_token_layout(frame.tiling, ImageTokenIds.from_tokenizer(tokenizer), settings)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    text = tokenizer.encode(user_turn(prompt), add_special_tokens=False)
    input_ids = np.concatenate([[bos], layout.tokens, text]).astype(np.int64)
    image_input_idx = np.where(layout.image_input_idx >= 0, layout.image_input_idx + 1, NO_TOKEN)
    device = frame.images.device
    return {
        "input_ids": torch.as_tensor(input_ids, device=device),
        "images": frame.images,
        "image_masks": frame.image_masks,
        "image_input_idx": torch.as_tensor(image_input_idx, dtype=torch.int64, device=device),
    }
