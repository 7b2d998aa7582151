"""What the track manager dropped, deleted or could not learn, counted and said in a rate-limited line.

The tracking stage calls it after each grounding's association and each frame's update of the tracks,
so every point that starts no track and every track deleted other than by age has a counter and a reason.
"""

from collections.abc import Callable

from videomolmo_ros.pipeline.counters import Counters
from videomolmo_ros.pipeline.refused_regions import REGION_KEPT_S
from videomolmo_ros.pipeline.track_manager import DUPLICATE_IOU, Association, TrackManager


class TrackReports:
    def __init__(self, tracker: TrackManager, counters: Counters, problem: Callable[..., None]):
        self._tracker, self._counters, self._problem = tracker, counters, problem  # problem(key, message, count)

    def association(self, association: Association, query: str) -> None:
        """The points that started no track (over a cap, on an object already taken, in a refused region), the
        LOST tracks evicted for room, and the returning objects found again or too alike to tell apart."""
        per_command, per_camera = self._tracker.max_objects_per_command, self._tracker.max_tracks
        caps = f"{per_command} per command (max_objects_per_command) and {per_camera} per camera (max_tracks)"
        dropped = f"point(s) for {query!r} dropped:"
        self._report(
            ("points_dropped_over_cap", association.over_cap, f"{dropped} over the caps of {caps}"),
            (
                "points_dropped_same_object",
                association.same_object,
                f"{dropped} inside the mask of a track another point took",
            ),
            (
                "points_dropped_in_region",
                association.in_region,
                f"{dropped} inside a region refused as no one object "
                f"(between the objects named) in the last {REGION_KEPT_S:g} s",
            ),
            ("tracks_evicted_lost", len(association.evicted), f"LOST track(s) deleted to make room under {caps}"),
        )
        self._counters.add("tracks_reattached", association.reattached)
        self._counters.add("reid_ambiguous", association.ambiguous)
        self._counters.add("reid_views_undescribed", association.undescribed)

    def counts(self) -> tuple[int, int, int]:
        """The tracker's running totals `update` compares with: regions, duplicates merged, views undescribed."""
        return self._tracker.regions, self._tracker.merged, self._tracker.undescribed

    def update(self, query: str, before: tuple[int, int, int]) -> None:
        """What one frame's update of a command's tracks deleted (regions, duplicates) or could not learn.

        Views that described nothing (too few pixels, features not finite: not learnt, and a returning point so
        described takes no LOST id) are counted, not logged: a small or distant object gives such views on every
        frame while it is tracked well."""
        regions, merged, undescribed = (now - then for now, then in zip(self.counts(), before, strict=True))
        self._counters.add("reid_views_undescribed", undescribed)
        self._report(
            (
                "tracks_rejected_region",
                regions,
                f"new track(s) of {query!r} deleted: the first mask held most of the "
                f"answer's points, more than max_objects_per_command ({self._tracker.max_objects_per_command}): a "
                "region between the objects named (a background)",
            ),
            (
                "tracks_merged_duplicate",
                merged,
                f"track(s) of {query!r} merged into an older track of the command: "
                f"their masks overlap at IoU >= {DUPLICATE_IOU} (the same object twice)",
            ),
        )

    def _report(self, *reports: tuple[str, int, str]) -> None:
        for key, count, what in reports:
            if count:
                self._problem(key, f"{count} {what}", count)
