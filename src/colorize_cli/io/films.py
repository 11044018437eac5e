"""Reading films and writing them back with PyAV (FFmpeg's libraries).

:func:`open_source` finds the film's video stream and what must survive: timestamps and time base,
size, sample aspect, colour tags, the display matrix (rotation), the audio streams.
:func:`choose_encoder` picks the encoder, pixel format and quality options. A
:class:`SegmentWriter` encodes a run of frames into one segment file (NUT: it keeps any time base
exactly) and renames it into place when it is complete; it also records each packet's pts and dts
(and duration) as the encoder gave them, since NUT cannot store the negative dts of B-frame delay.
:func:`join` puts the segments' packets, with those timestamps, and the source's audio packets,
copied untouched, into one file. Both write through :func:`colorize_cli.io.atomic.atomic_write` (PyAV
muxes into its file object): whole, synced and renamed, or not there. :func:`film_problem` tells
a rerun whether an existing output is a whole film.
"""

from __future__ import annotations

import contextlib
import heapq
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from colorize_cli.errors import error_line
from colorize_cli.io.atomic import atomic_write

# Each film suffix: FFmpeg's muxer, and the encoders tried for it by default (the first this FFmpeg has).
# Every one is written by tests/test_video_containers.py. Not here: .dv (DV allows only PAL/NTSC frame
# sizes) and .mxf (its muxer takes only broadcast sizes and rates): a film cannot be written back as it is.
CONTAINERS = {
    ".mp4": ("mp4", ("libx264", "mpeg4")), ".m4v": ("mp4", ("libx264", "mpeg4")),
    ".mov": ("mov", ("libx264", "mpeg4")), ".mkv": ("matroska", ("libx264", "mpeg4")),
    ".webm": ("webm", ("libvpx-vp9", "libvpx")), ".avi": ("avi", ("mpeg4",)),  # AVI cannot store B-frame pts
    ".ts": ("mpegts", ("libx264", "mpeg2video")), ".m2ts": ("mpegts", ("libx264", "mpeg2video")),
    ".mts": ("mpegts", ("libx264", "mpeg2video")),
    ".mpg": ("mpeg", ("mpeg2video",)), ".mpeg": ("mpeg", ("mpeg2video",)), ".vob": ("vob", ("mpeg2video",)),
    ".wmv": ("asf", ("wmv2", "msmpeg4")), ".flv": ("flv", ("libx264", "flv")),
    ".3gp": ("3gp", ("libx264", "h263")), ".ogv": ("ogg", ("libtheora", "libvpx")),
}
VIDEO_SUFFIXES = set(CONTAINERS)
# what these muxers hold but do not list (they have no codec tag table to query, or a short one)
_UNLISTED = {"mpegts": {"h264", "hevc", "mpeg4", "av1", "vc1"}, "mpeg": {"mpeg2video"}, "ogg": {"vp8"}}
# encoders that take a constant-quality --crf, and the default of each (films are kept, not streamed)
CRF_DEFAULTS = {"libx264": 18, "libx265": 22, "libvpx-vp9": 32, "libvpx": 10, "libsvtav1": 35, "libaom-av1": 32}
# encoders of the MPEG-2 era: constant quantiser 3 (their default is a 200 kb/s bitrate, far below a kept film)
QSCALE_DEFAULT = 3
QSCALE_CODECS = {"mpeg2video", "mpeg1video", "mpeg4", "wmv2", "msmpeg4", "h263", "flv"}
_QP2LAMBDA = 118
FRAME_CLOCK_CODECS = {"mpeg1video", "mpeg2video"}  # encoders whose time base must be one frame  # FFmpeg's FF_QP2LAMBDA: global_quality is a quantiser times this
WORK_SUFFIX = ".parts"


class VideoError(Exception):
    """A film that cannot be read or written; the message names the reason."""


def is_video(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def muxer(suffix: str) -> str:
    """FFmpeg's muxer for a film suffix (one of VIDEO_SUFFIXES)."""
    return CONTAINERS[suffix.lower()][0]


def looks_like_film(path: Path) -> bool:
    """False for a file with a film suffix that is text (a TypeScript ``app.ts``, an ``.mts`` module):
    its first 4 KiB decode as UTF-8 and have no NUL byte, which no container's header does. A file
    that cannot be read counts as a film (its reading fails with the reason)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return True
    if not head or b"\0" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut by the 4 KiB boundary is still text
    return False


def work_folder(target: Path) -> Path:
    """The hidden folder beside ``target`` that holds its finished segments until they are joined."""
    return target.with_name(f".{target.name}{WORK_SUFFIX}")


def in_work_folder(path: Path) -> bool:
    """True for files inside a work folder (never inputs of a batch)."""
    return any(p.startswith(".") and p.endswith(WORK_SUFFIX) for p in Path(path).parts[:-1])


@dataclass
class Source:
    """An opened film and what its output keeps."""

    path: Path
    container: object  # av.container.InputContainer
    stream: object  # its video stream
    width: int
    height: int
    time_base: Fraction
    rate: Fraction  # average frame rate (for the encoder's rate control; timestamps are copied)
    frames: int  # expected number of frames (0: unknown)
    duration: float  # seconds, from the header (0: unknown)
    duration_slack: float  # how far the frames may end before ``duration`` (the file's, audio included)
    sar: Fraction | None
    colour_tags: dict = field(default_factory=dict)  # color_primaries, color_trc of the source
    skipped_streams: int = 0  # subtitle and data streams, which are not copied

    def close(self) -> None:
        self.container.close()


def open_source(path: Path) -> Source:
    """Open ``path`` and find its video stream; raises :class:`VideoError` with a one-line reason."""
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except FileNotFoundError:
        raise VideoError("file not found") from None
    except PermissionError:
        raise VideoError("permission denied") from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"not a readable video ({error_line(exc, reason_only=True)})") from None
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not videos:
        audio, kind = len(container.streams.audio), container.format.long_name or container.format.name
        container.close()
        if audio:
            raise VideoError(f"no video stream (only {audio} audio stream{'s' * (audio > 1)})")
        # FFmpeg probes by content: a few bytes of noise can pass for a subtitle or data format
        raise VideoError(f"not a readable video (no video or audio stream; FFmpeg took it for {kind})")
    stream = videos[0]
    cc = stream.codec_context
    if cc is None or cc.codec is None or not cc.codec.is_decoder:
        name = cc.codec.name if cc is not None and cc.codec is not None else "not known to FFmpeg"
        container.close()
        raise VideoError(f"unsupported video codec ({name}): this FFmpeg has no decoder for it")
    if not cc.width or not cc.height:
        container.close()
        raise VideoError("the video stream has no frame size (damaged header?)")
    stream.thread_type = "AUTO"  # FFmpeg's own decoding threads
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    if stream.duration:
        duration = float(stream.duration * stream.time_base)
        slack = max(0.5, 0.02 * duration)
    else:  # the container's duration, which the sound may make longer than the picture
        duration = (container.duration or 0) / 1e6
        slack = max(2.0, 0.1 * duration)
    frames = stream.frames or round(duration * rate)
    tags = {k: getattr(cc, k) for k in ("color_primaries", "color_trc") if getattr(cc, k, 2) not in (0, 2)}
    skipped = len(container.streams) - len(videos) - len(container.streams.audio)
    return Source(Path(path), container, stream, cc.width, cc.height, stream.time_base, Fraction(rate),
                  int(frames or 0), duration, slack, stream.sample_aspect_ratio, tags, skipped)


def film_problem(target: Path, source: Path) -> str | None:
    """Why the film ``target`` is not a whole output of ``source`` (None: it is), cheaply: PyAV opens
    it, it has a video stream, and its video packets end where the source's do. Both ends are found
    the same way (:func:`_frames_end`: a seek near the end, packets demuxed, not decoded), so they
    must agree within two frames. A write cut short, by a kill or a full disk in an older version or
    another program, fails this."""
    if not Path(target).exists():
        return "missing"
    try:
        src = open_source(source)
    except VideoError:
        return None  # nothing to compare with; the job would fail on its source anyway
    try:
        expected = _frames_end(src)
        tolerance = 2 / src.rate + 0.05
    except VideoError:
        return None
    finally:
        src.close()
    try:
        out = open_source(target)
    except VideoError as exc:
        return str(exc)
    try:
        end = _frames_end(out, hint=expected)
    except VideoError as exc:
        return str(exc)
    finally:
        out.close()
    if expected is not None and (end is None or end < expected - tolerance):
        return "no video packets" if end is None else f"its frames end at {end:.2f} s of {expected:.2f} s"
    return None


def _frames_end(film: Source, hint: float | None = None) -> float | None:
    """Where the last video packet of ``film`` ends (seconds from the stream's start; None: it has
    none): packets demuxed from a seek 3 s before ``hint`` (the header's duration by default), or
    from the start where the seek finds none."""
    import av

    stream, container = film.stream, film.container
    start = stream.start_time or 0
    hint = film.duration if hint is None else hint
    for seek in ([hint - 3.0] if hint and hint > 3.0 else []) + [None]:
        try:
            if seek is not None:
                container.seek(int(seek / stream.time_base) + start, stream=stream, backward=True)
            else:
                container.seek(0, backward=True)
            ends = [(p.pts + (p.duration or 0) - start) * stream.time_base
                    for p in container.demux(stream) if p.size and p.pts is not None]
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(f"not a readable video ({error_line(exc, reason_only=True)})") from None
        if ends:
            return float(max(ends))
    return None


@dataclass
class Encoding:
    codec: str
    pix_fmt: str
    options: dict[str, str]
    notes: list[str] = field(default_factory=list)


def default_codec(suffix: str) -> str:
    """The container's default encoder (:data:`CONTAINERS`): H.264 where it holds it, VP9 for WebM, ..."""
    import av

    wanted = CONTAINERS[suffix.lower()][1]
    return next((c for c in wanted if c in av.codecs_available), wanted[-1])


def check_codec(name: str):
    """The FFmpeg video encoder called ``name``; ValueError if there is none."""
    import av

    try:
        enc = av.codec.Codec(name, "w")
    except ValueError:
        raise ValueError(f"--codec {name}: this FFmpeg has no such encoder (see 'ffmpeg -encoders')") from None
    if enc.type != "video":
        raise ValueError(f"--codec {name}: not a video encoder")
    return enc


def choose_encoder(codec: str | None, target: Path, width: int, height: int, crf: int | None) -> Encoding:
    """Encoder, pixel format and options for a ``width`` x ``height`` film written to ``target``.

    yuv420p where the size is even; an odd size (4:2:0 needs even sizes) is encoded yuv444p.
    """
    import av

    suffix = target.suffix.lower()
    name = codec or default_codec(suffix)
    try:
        enc = check_codec(name)
    except ValueError as exc:
        raise VideoError(str(exc)) from None
    if suffix not in CONTAINERS:
        raise VideoError(f"cannot write {suffix or 'a film without a suffix'} films "
                         f"(writable: {', '.join(sorted(CONTAINERS))})")
    probe = av.open(os.devnull, "w", format=muxer(suffix))
    try:
        if enc.canonical_name not in probe.supported_codecs | _UNLISTED.get(muxer(suffix), set()):
            raise VideoError(f"a {suffix} file cannot hold {enc.canonical_name} video; choose another --codec")
    finally:
        probe.close()
    formats = [f.name for f in enc.video_formats or []]
    notes = []
    if width % 2 == 0 and height % 2 == 0 and "yuv420p" in formats:
        pix_fmt = "yuv420p"
    elif "yuv444p" in formats:
        pix_fmt = "yuv444p"
        if "yuv420p" in formats:
            notes.append(f"odd size {width}x{height}: encoded yuv444p (4:2:0 needs even sizes; "
                         "some players cannot play 4:4:4)")
    else:
        raise VideoError(f"{name} cannot encode yuv420p at {width}x{height} or yuv444p; choose another --codec")
    options = {}
    if name in CRF_DEFAULTS:
        options["crf"] = str(CRF_DEFAULTS[name] if crf is None else crf)
        if name.startswith("libvpx"):
            options["b"] = "0"  # constant quality, no bitrate target
    elif name in QSCALE_CODECS:
        options.update(flags="+qscale", global_quality=str(QSCALE_DEFAULT * _QP2LAMBDA))
        if crf is not None:
            notes.append(f"--crf is not an option of {name}: constant quantiser {QSCALE_DEFAULT} is used")
    elif crf is not None:
        notes.append(f"--crf is not an option of {name}: its default quality is used")
    return Encoding(name, pix_fmt, options, notes)


class SegmentWriter:
    """Encode frames into ``path`` (NUT, by :func:`atomic_write`); :meth:`finish` flushes and renames
    the complete file into place, :meth:`abort` removes what was written."""

    def __init__(self, path: Path, encoding: Encoding, source: Source, colorspace: int, color_range: int):
        import av

        self.path = path
        self._file_cm = atomic_write(path)  # entered here, left by finish (rename) or abort (removal)
        self._file = self._file_cm.__enter__()
        self.out = av.open(self._file, "w", format="nut", options={"avoid_negative_ts": "disabled"})
        self.timestamps: list[tuple[int, int, int]] = []  # (pts, dts, duration) of each packet, source time base
        self.stream = self.out.add_stream(encoding.codec, rate=source.rate)
        cc = self.stream.codec_context
        cc.width, cc.height, cc.pix_fmt = source.width, source.height, encoding.pix_fmt
        self.stream.time_base = cc.time_base = source.time_base
        # MPEG-1/2 count time in frames: their encoder gets a time base of one frame, and each packet
        # gets its frame's own timestamp back (they have no B-frames by default: dts == pts)
        self._source_pts: dict[int, int] | None = None
        if encoding.codec in FRAME_CLOCK_CODECS:
            cc.time_base = 1 / Fraction(source.rate).limit_denominator(1001)
            self._source_pts, self._last = {}, None
        if source.sar:
            cc.sample_aspect_ratio = source.sar
        cc.colorspace, cc.color_range = colorspace, color_range
        for key, value in source.colour_tags.items():
            setattr(cc, key, value)
        cc.options = dict(encoding.options)

        self._durations: dict[int, int] = {}  # encoders do not pass a frame's duration on to its packet

    def encode(self, frame, duration: int = 0) -> None:
        if self._source_pts is not None:
            tb = self.stream.codec_context.time_base
            ticks = round(frame.pts * frame.time_base / tb)
            ticks = ticks if self._last is None or ticks > self._last else self._last + 1
            self._source_pts[ticks], self._last = frame.pts, ticks
            frame.pts, frame.time_base = ticks, tb
        self._durations[frame.pts] = duration
        self._mux(self.stream.encode(frame))

    def _mux(self, packets) -> None:
        for packet in packets:
            if self._source_pts is None:
                duration = packet.duration or self._durations.pop(packet.pts, 0)
            else:  # the frame's duration as given, in the source's time base
                duration = self._durations.pop(packet.pts, 0)
                packet.time_base = self.stream.time_base
                packet.pts = packet.dts = self._source_pts.pop(packet.pts)
                packet.duration = duration
            self.timestamps.append((packet.pts, packet.dts, duration))
            self.out.mux(packet)

    @property
    def open(self) -> bool:
        return self._file_cm is not None

    def finish(self) -> None:
        try:
            self._mux(self.stream.encode(None))
            self.out.close()
        except BaseException as exc:
            self.abort(exc)
            raise
        cm, self._file_cm = self._file_cm, None
        cm.__exit__(None, None, None)

    def abort(self, exc: BaseException | None = None) -> None:
        with contextlib.suppress(Exception):  # the file is removed either way
            self.out.close()
        cm, self._file_cm = self._file_cm, None
        if cm is not None:
            exc = exc or VideoError("aborted")
            with contextlib.suppress(BaseException):
                cm.__exit__(type(exc), exc, exc.__traceback__)


def join(segments: list[tuple[Path, list]], source: Path, target: Path, display_matrix: list[int] | None) -> None:
    """Write ``target``: the video packets of the segments (path, the writer's ``timestamps``) in
    order, the source's audio packets copied, the container and stream metadata and the display
    matrix kept. Written by :func:`colorize_cli.io.atomic.atomic_write`: whole or not at all.
    """
    import av

    src = av.open(str(source), metadata_errors="ignore")
    first = av.open(str(segments[0][0]))
    try:
        template = first.streams.video[0]
        extradata = template.codec_context.extradata
        video_in = next(s for s in src.streams.video if not s.disposition & av.stream.Disposition.attached_pic)
        with atomic_write(target) as f, av.open(f, "w", format=muxer(target.suffix)) as out:
            out.metadata.update(src.metadata)
            video = out.add_stream_from_template(template)
            video.time_base = video_in.time_base
            video.codec_context.framerate = video_in.average_rate or video_in.guessed_rate
            video.metadata.update(video_in.metadata)
            if display_matrix:
                video.set_display_matrix(display_matrix)
            audio = {s.index: out.add_stream_from_template(s) for s in src.streams.audio}
            for s in src.streams.audio:
                audio[s.index].metadata.update(s.metadata)

            def video_packets():
                last_dts = None
                for path, timestamps in segments:
                    with av.open(str(path)) as seg:
                        if seg.streams.video[0].codec_context.extradata != extradata:
                            raise VideoError(f"segment {path.name} was encoded with other codec headers; "
                                             "rerun with --overwrite")
                        packets = [p for p in seg.demux(seg.streams.video[0]) if p.size]
                        if len(packets) != len(timestamps):
                            raise VideoError(f"segment {path.name} is damaged; rerun with --overwrite")
                        for packet, (pts, dts, duration) in zip(packets, timestamps):
                            if last_dts is not None and dts <= last_dts:
                                dts = last_dts + 1  # B-frame delay at a segment start
                            packet.time_base, packet.pts, packet.dts = video_in.time_base, pts, dts
                            packet.duration = duration
                            last_dts = dts
                            packet.stream = video
                            yield packet

            def audio_packets():
                if not audio:
                    return
                for packet in src.demux(*src.streams.audio):
                    if packet.size == 0:
                        continue
                    packet.stream = audio[packet.stream.index]
                    yield packet

            def when(packet) -> Fraction:
                ts = packet.dts if packet.dts is not None else packet.pts
                return (ts or 0) * packet.time_base

            for packet in heapq.merge(video_packets(), audio_packets(), key=when):
                out.mux(packet)
    finally:
        first.close()
        src.close()
