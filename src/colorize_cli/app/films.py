"""Colorize films: ``colorize film.mp4`` -> ``film_color.mp4`` with every frame, its timestamps, the
sound, and a colour that does not flicker.

    decode (thread) ─► Y plane, kept as it is ─► gray at the working size ─► Colorizer.predict (batches)
      ─► ChromaStabilizer (temporal.py) ─► U/V from Lab(L of Y, ab) ─► encode (thread) ─► segment files

Only chroma is predicted: the output's Y plane is the decoded frame's (in its pixel format), and
the network sees it as it sees a gray photo. Frames are encoded in segments of
``segment_seconds`` into a hidden work folder beside the output; each segment, with the
stabiliser's state after it, is renamed into place when complete, so a rerun after Ctrl-C or a
kill continues after the last finished segment with the same colour it would have had. When all
are there, :func:`videoio.join` makes one file of them and the source's audio packets.
"""

from __future__ import annotations

import io
import json
import math
import queue
import shutil
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from colorize_cli._version import __version__
from colorize_cli.color import denormalize_l, gray_to_l, lab_to_rgb, rgb_to_lab, saturate
from colorize_cli.engine.temporal import ChromaStabilizer, chroma_flicker
from colorize_cli.hints import Hints, hint_inputs
from colorize_cli.io.atomic import atomic_write, exclusive_lock, remove_stale_parts, write_text
from colorize_cli.io.films import (
    SegmentWriter,
    VideoError,
    choose_encoder,
    film_problem,
    join,
    open_source,
    work_folder,
)
from colorize_cli.io.images import Photo
from colorize_cli.resample import pool2, resize_area, resize_bilinear

# luma/chroma weights (Kr, Kb) and FFmpeg's AVColorSpace number of each matrix
MATRICES = {"bt709": (0.2126, 0.0722, 1), "bt601": (0.299, 0.114, 6)}
LOCK_NAME = "lock"  # in the work folder: held by the one process writing the film, from start to end
_LIMITED_GRAY = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)


@dataclass
class FilmOptions:
    codec: str | None = None  # FFmpeg encoder name; None: H.264 (VP9 for .webm)
    crf: int | None = None  # constant quality; None: the encoder's default in videoio.CRF_DEFAULTS
    stabilize: bool = True
    segment_seconds: float = 10.0
    batch_size: int = 4
    overwrite: bool = False
    skip_color: bool = False
    saturation: float = 1.0  # scale of the predicted chroma, within the gamut (color.saturate)
    hints: Hints | None = None  # a reference's colours (the hint model's global hint), for every frame


@dataclass
class FilmResult:
    frames: int = 0  # frames in the output
    resumed_frames: int = 0  # of them, taken from an interrupted run's finished segments
    in_colour: bool = False  # the film already had colour (colorized from its luminance)
    skipped: bool = False  # ... and was left alone (skip_color)
    busy: bool = False  # another process holds the film's lock: left to it
    done_meanwhile: bool = False  # another process finished it since the batch was planned
    notes: list[str] = field(default_factory=list)


@dataclass
class _Frame:
    segment: int
    pts: int
    duration: int  # in the source's time base; 0 if the decoder does not know
    y: np.ndarray  # (H, W) uint8: the output's Y plane
    l_norm: np.ndarray  # (1, 1, h, w): the network's input


def _segment_of(pts: int, origin: int, time_base: Fraction, seconds: float) -> int:
    return max(0, math.floor((pts - origin) * time_base / Fraction(seconds)))


def _plane(plane, copy: bool = True) -> np.ndarray:
    arr = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
    return arr.copy() if copy else arr


def _display_matrix(frame) -> list[int] | None:
    """The frame's display matrix (rotation, flip) as nine integers, or None. Looked up by its type:
    iterating ``frame.side_data`` gives the side data in PyAV < 18 but their types in 18 and later."""
    from av.sidedata.sidedata import Type

    side = frame.side_data.get(Type.DISPLAYMATRIX)
    return None if side is None else np.frombuffer(bytes(side), np.int32)[:9].tolist()


def _is_colour(frame) -> bool:
    """The frame has chroma (U or V away from neutral by more than rounding)."""
    if frame.format.name.startswith(("gray", "pal")) or len(frame.planes) < 3:
        return False
    yuv = frame if frame.format.name.startswith("yuv") else frame.reformat(format="yuv444p")
    return any(np.abs(_plane(p, copy=False)[::4, ::4].astype(np.int16) - 128).max() > 3 for p in yuv.planes[1:3])


def chroma_planes(y: np.ndarray, ab_small: np.ndarray, subsampled: bool, matrix: str,
                  full_range: bool) -> tuple[np.ndarray, np.ndarray]:
    """U and V planes for luma ``y`` (H, W) and predicted ``ab_small`` (2, h, w): the colour
    Lab(L of the gray that ``y`` shows, ab upsampled) in the film's YUV matrix and range, at the
    chroma resolution (half in each direction when ``subsampled``: 4:2:0)."""
    lum = pool2(y) if subsampled else y.astype(np.float32)
    gray = lum / 255 if full_range else (lum - 16) / 219
    lum = gray_to_l(np.clip(gray, 0, 1)).astype(np.float32)
    ab = resize_bilinear(ab_small, lum.shape)
    r, g, b = lab_to_rgb(np.concatenate([lum[None], ab])).astype(np.float32)
    kr, kb, _ = MATRICES[matrix]
    luma = kr * r + (1 - kr - kb) * g + kb * b
    scale, low, high = (255, 0, 255) if full_range else (224, 16, 240)
    u = np.clip(np.rint(128 + scale * (b - luma) / (2 * (1 - kb))), low, high)
    v = np.clip(np.rint(128 + scale * (r - luma) / (2 * (1 - kr))), low, high)
    return u.astype(np.uint8), v.astype(np.uint8)


def _guidance_key(hints: Hints) -> list:
    """What of a film's references a resumed run must share with the one it resumes."""
    entries = hints.schedule or [(0.0, hints)]
    return [[t, np.round(h.histogram, 5).tolist(), round(h.saturation, 4)] for t, h in entries]


class _Work:
    """The work folder of one output: finished segments, the stabiliser state after each, a manifest."""

    def __init__(self, target: Path, settings: dict, overwrite: bool):
        self.dir = work_folder(target)
        self.manifest_path = self.dir / "manifest.json"
        self.settings = settings
        self.restarted = False
        manifest = None
        if self.manifest_path.exists() and not overwrite:
            try:
                manifest = json.loads(self.manifest_path.read_text())
            except (OSError, ValueError):
                manifest = None
        if manifest is None or manifest.get("settings") != settings:
            self.restarted = self.manifest_path.exists() and not overwrite
            for path in self.dir.iterdir() if self.dir.exists() else []:
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.name != LOCK_NAME:  # ours, held
                    path.unlink()
            manifest = {"settings": settings, "segments": [], "complete": False}
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(self.dir)  # left by a kill
        # finished segments: a prefix whose files are all there
        done = []
        for i, seg in enumerate(manifest["segments"]):
            if seg["index"] != i or not self.segment(i).is_file() or not self.state(i).is_file():
                break
            done.append(seg)
        self.manifest = {**manifest, "segments": done, "complete": manifest["complete"] and
                         len(done) == len(manifest["segments"])}

    def segment(self, i: int) -> Path:
        return self.dir / f"seg-{i:05d}.nut"

    def state(self, i: int) -> Path:
        return self.dir / f"state-{i:05d}.npz"

    def load_state(self, i: int) -> dict[str, np.ndarray]:
        """The arrays saved after segment ``i``: its packets' timestamps, the stabiliser's last frame."""
        with np.load(self.state(i), allow_pickle=False) as saved:
            return {k: saved[k] for k in saved.files}

    def timestamps(self, i: int) -> list[tuple[int, int, int]]:
        return self.load_state(i)["timestamps"].tolist()

    def commit(self, writer: SegmentWriter, index: int, frames: int, end: int, next_pts: int | None,
               state: dict) -> None:
        """Make segment ``index`` durable: its file, then the state after it, then the manifest."""
        writer.finish()
        state = {**state, "timestamps": np.asarray(writer.timestamps, np.int64).reshape(-1, 3)}
        buffer = io.BytesIO()  # np.savez wants a seekable file: the whole archive, then one atomic write
        np.savez(buffer, **state)
        with atomic_write(self.state(index)) as f:
            f.write(buffer.getvalue())
        self.manifest["segments"].append({"index": index, "frames": frames, "end": end, "next_pts": next_pts})
        self.manifest["complete"] = next_pts is None
        write_text(self.manifest_path, json.dumps(self.manifest, indent=1))


def colorize_film(colorizer, source: Path, target: Path, opts: FilmOptions, on_frames=None) -> FilmResult:
    """Colorize the film ``source`` into ``target``; returns what was done.

    ``on_frames(total, done_now)`` is called with the expected frame count once, then with each
    batch of finished frames. Raises :class:`VideoError` for a film that cannot be read or written.
    The whole film is written under an exclusive lock in its work folder: a second process on the
    same film returns at once with ``busy`` set, and one that finds the film finished meanwhile
    returns with ``done_meanwhile``.
    """
    with exclusive_lock(work_folder(target) / LOCK_NAME) as held:
        if not held:
            return FilmResult(busy=True)
        if not opts.overwrite and film_problem(target, source) is None:
            shutil.rmtree(work_folder(target), ignore_errors=True)
            return FilmResult(done_meanwhile=True)
        try:
            return _colorize_film(colorizer, source, target, opts, on_frames)
        except BaseException:
            work = work_folder(target)
            if work.is_dir() and {p.name for p in work.iterdir()} <= {LOCK_NAME}:  # nothing to resume
                shutil.rmtree(work, ignore_errors=True)
            raise


def _colorize_film(colorizer, source: Path, target: Path, opts: FilmOptions, on_frames) -> FilmResult:
    src = open_source(source)
    result = FilmResult()
    try:
        first = _first_frame(src)
        result.in_colour = _is_colour(first)
        if result.in_colour and opts.skip_color:
            result.skipped = True
            return result
        encoding = choose_encoder(opts.codec, target, src.width, src.height, opts.crf)
        result.notes += encoding.notes
        if src.skipped_streams:
            result.notes.append(f"{src.skipped_streams} subtitle/data stream(s) not copied")
        matrix = "bt709" if first.colorspace == 1 else "bt601" if first.colorspace in (5, 6) else (
            "bt709" if src.height >= 720 else "bt601")
        full_range = first.color_range == 2 and first.format.name == encoding.pix_fmt
        origin = src.stream.start_time if src.stream.start_time is not None else first.pts
        stat = source.stat()
        settings = {"version": __version__, "source": [str(source.resolve()), stat.st_size, stat.st_mtime_ns],
                    "model": str(colorizer.weights_path), "working": list(colorizer.working_shape(
                        Photo(np.zeros((src.height, src.width), np.uint8)))),
                    "codec": encoding.codec, "pix_fmt": encoding.pix_fmt, "options": encoding.options,
                    "stabilize": opts.stabilize, "segment_seconds": opts.segment_seconds, "origin": origin,
                    "saturation": opts.saturation,
                    "reference": None if not opts.hints else _guidance_key(opts.hints)}
        work = _Work(target, settings, opts.overwrite)
        if work.restarted:
            result.notes.append("the settings changed since the interrupted run: starting again")
        done = work.manifest["segments"]
        result.resumed_frames = sum(s["frames"] for s in done)
        if on_frames:
            on_frames(max(src.frames, result.resumed_frames), result.resumed_frames)
        if not work.manifest["complete"]:
            pipeline = _Pipeline(colorizer, src, encoding, opts, work, origin, matrix, full_range, on_frames)
            pipeline.run(len(done), done[-1]["next_pts"] if done else None)
        segments = work.manifest["segments"]
        result.frames = sum(s["frames"] for s in segments)
        end = float((segments[-1]["end"] - origin) * src.time_base)
        if src.duration and end < src.duration - src.duration_slack:
            shutil.rmtree(work.dir, ignore_errors=True)
            raise VideoError(f"truncated or damaged: its frames end at {end:.2f} s of {src.duration:.2f} s")
        join([(work.segment(i), work.timestamps(i)) for i in range(len(segments))], source, target,
             _display_matrix(first))
        shutil.rmtree(work.dir, ignore_errors=True)
        return result
    finally:
        src.close()


def _first_frame(src):
    import av

    try:
        for frame in src.container.decode(src.stream):
            return frame
    except av.FFmpegError as exc:
        raise VideoError(f"cannot decode the first frame ({exc})") from None
    raise VideoError("no frame could be decoded (damaged or truncated?)")


class _Pipeline:
    """Decode in a thread, predict and stabilise here, compute chroma and encode in another thread."""

    def __init__(self, colorizer, src, encoding, opts: FilmOptions, work: _Work, origin: int, matrix: str,
                 full_range: bool, on_frames):
        self.c, self.src, self.enc, self.opts, self.work = colorizer, src, encoding, opts, work
        self.origin, self.matrix, self.full_range, self.on_frames = origin, matrix, full_range, on_frames
        self.stabilizer = ChromaStabilizer() if opts.stabilize else None
        self.stop = threading.Event()
        self.frames: queue.Queue = queue.Queue(maxsize=2 * opts.batch_size + 2)

    def _segment(self, pts: int) -> int:
        return _segment_of(pts, self.origin, self.src.time_base, self.opts.segment_seconds)

    def _read(self, start: int, start_pts: int | None) -> None:
        """Decoder thread: the frames of segment ``start`` on, then None; or the exception that stopped it."""
        import av

        try:
            if not (start and self._decode(start, start_pts, seek=True)):
                self._decode(start, start_pts, seek=False)
            self._put(None)
        except av.FFmpegError as exc:
            self._put(VideoError(f"damaged or truncated film ({exc})"))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._put(exc)

    def _decode(self, start: int, start_pts: int | None, seek: bool) -> bool:
        """Decode a fresh opening of the file, from a seek near segment ``start`` or from the beginning.

        Returns False, having sent nothing, when the seek landed after the frame the segment starts with.
        """
        import av

        with av.open(str(self.src.path), metadata_errors="ignore") as container:
            stream = container.streams[self.src.stream.index]
            stream.thread_type = "AUTO"
            if seek:
                container.seek(start_pts, stream=stream, backward=True)
            prev_pts, checked = None, not seek
            for frame in container.decode(stream):
                pts = frame.pts if frame.pts is not None else (prev_pts + 1 if prev_pts is not None else self.origin)
                prev_pts = pts
                seg = self._segment(pts)
                if seg < start:
                    continue
                if not checked:
                    if pts != start_pts:
                        return False
                    checked = True
                self._put(self._prepare(frame, seg, pts))
                if self.stop.is_set():
                    break
        return True

    def _put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.frames.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _prepare(self, frame, seg: int, pts: int) -> _Frame:
        if frame.format.name != self.enc.pix_fmt:
            frame = frame.reformat(format=self.enc.pix_fmt, dst_colorspace=MATRICES[self.matrix][2])
        y = _plane(frame.planes[0])
        gray = y if self.full_range else _LIMITED_GRAY[y]
        return _Frame(seg, pts, frame.duration or 0, y, self.c.working_input(Photo(gray)))

    def _encode(self, writer: SegmentWriter, item: _Frame, ab: np.ndarray) -> None:
        import av

        u, v = chroma_planes(item.y, ab, self.enc.pix_fmt == "yuv420p", self.matrix, self.full_range)
        frame = av.VideoFrame(self.src.width, self.src.height, self.enc.pix_fmt)
        for plane, data in zip(frame.planes, (item.y, u, v)):
            _plane(plane, copy=False)[:] = data
        frame.pts, frame.time_base = item.pts, self.src.time_base
        writer.encode(frame, item.duration)

    def _writer(self, index: int) -> SegmentWriter:
        return SegmentWriter(self.work.segment(index), self.enc, self.src, MATRICES[self.matrix][2],
                             2 if self.full_range else 1)

    def run(self, start: int, start_pts: int | None) -> None:
        if start and self.stabilizer is not None:
            saved = self.work.load_state(start - 1)
            self.stabilizer.state = {k: saved[k] for k in ("lum", "ab") if k in saved}
        reader = threading.Thread(target=self._read, args=(start, start_pts), name="decode", daemon=True)
        encoder = ThreadPoolExecutor(1, thread_name_prefix="encode")
        pending: deque[Future] = deque()
        writer, segment, count, end, batch = None, start, 0, 0, []

        def wait(limit: int) -> None:
            while len(pending) > limit:
                pending.popleft().result()

        def flush() -> None:
            if not batch:
                return
            l_norm = np.concatenate([f.l_norm for f in batch])
            hints = None
            if self.opts.hints:
                size = (self.src.height, self.src.width)
                when = [self.opts.hints.at(float((f.pts - self.origin) * self.src.time_base)) for f in batch]
                hints = hint_inputs(when, [size] * len(batch), l_norm.shape[-2:], self.c.hint_bins)
            abs_ = self.c.predict(l_norm, hints=hints)
            if self.opts.saturation != 1:
                abs_ = [saturate(ab, denormalize_l(f.l_norm[0, 0]), self.opts.saturation) for f, ab in zip(batch, abs_)]
            for item, ab in zip(batch, abs_):
                if self.stabilizer is not None:
                    ab = self.stabilizer(denormalize_l(item.l_norm[0, 0]), ab)
                pending.append(encoder.submit(self._encode, writer, item, ab))
            if self.on_frames:
                n = len(batch)
                pending.append(encoder.submit(self.on_frames, None, n))
            batch.clear()
            wait(2 * self.opts.batch_size)

        def close_segment(next_pts: int | None) -> None:
            flush()
            state = dict(self.stabilizer.state) if self.stabilizer is not None else {}
            pending.append(encoder.submit(self.work.commit, writer, segment, count, end, next_pts, state))

        reader.start()
        try:
            while True:
                item = self.frames.get()
                if isinstance(item, BaseException):
                    raise item
                if item is not None and writer is not None and item.segment != segment:
                    close_segment(item.pts)
                    writer = None
                if item is None:
                    if writer is not None:
                        close_segment(None)
                    wait(0)
                    return
                if writer is None:
                    segment, count = item.segment, 0
                    writer = self._writer(segment)
                batch.append(item)
                count += 1
                end = item.pts + item.duration
                if len(batch) >= self.opts.batch_size:
                    flush()
        except BaseException:
            self.stop.set()
            for fut in pending:
                fut.cancel()
            raise
        finally:
            self.stop.set()
            encoder.shutdown(wait=True)
            reader.join(timeout=10)
            if writer is not None and writer.open:
                writer.abort()


def film_flicker(path: Path, size: int = 256) -> tuple[float, int, float]:
    """The flicker measure of a film (temporal.chroma_flicker): decoded frames, scaled to ``size``
    pixels on the long side (area average), in Lab. Returns (mean change in Lab units, cuts left out,
    mean chroma sqrt(a² + b²) of all frames: a smoother that only washed the colour out would show there)."""
    import av


    lums, abs_ = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24").transpose(2, 0, 1) / 255
            scale = min(1.0, size / max(rgb.shape[1:]))
            shape = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[2] * scale)))
            lab = rgb_to_lab(resize_area(rgb, shape)).astype(np.float32)
            lums.append(lab[0])
            abs_.append(lab[1:])

    flicker, cuts = chroma_flicker(lums, abs_)
    return flicker, cuts, float(np.sqrt((np.stack(abs_) ** 2).sum(1)).mean()) if abs_ else 0.0
