"""Reading films and writing them back with PyAV (FFmpeg's libraries).

:func:`open_source` finds the film's video stream and what must survive: timestamps and time base,
size, sample aspect, colour tags, the display matrix (rotation), the audio streams.
:func:`choose_encoder` picks the encoder, pixel format and quality options. A
:class:`SegmentWriter` encodes a run of frames into one segment file (NUT: it keeps any time base
exactly) and renames it into place when it is complete; it also records each packet's pts and dts
(and duration) as the encoder gave them, since NUT cannot store the negative dts of B-frame delay.
:func:`join` puts the segments' packets, with those timestamps, and the source's audio packets,
copied untouched, into one file, written under a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import heapq
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts",
                  ".wmv", ".flv", ".3gp", ".ogv", ".dv", ".mxf", ".vob"}
# muxer by output suffix where FFmpeg's guess from the name is not the one users mean
MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
# encoders that take a constant-quality --crf, and the default of each (films are kept, not streamed)
CRF_DEFAULTS = {"libx264": 18, "libx265": 22, "libvpx-vp9": 32, "libvpx": 10, "libsvtav1": 35, "libaom-av1": 32}
WORK_SUFFIX = ".parts"


class VideoError(Exception):
    """A film that cannot be read or written; the message names the reason."""


def is_video(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def work_folder(target: Path) -> Path:
    """The hidden folder beside ``target`` that holds its finished segments until they are joined."""
    return target.with_name(f".{target.name}{WORK_SUFFIX}")


def in_work_folder(path: Path) -> bool:
    """True for files inside a work folder (never inputs of a batch)."""
    return any(p.startswith(".") and p.endswith(WORK_SUFFIX) for p in Path(path).parts[:-1])


def _first_line(exc: BaseException) -> str:
    """FFmpeg's reason without the errno and file name PyAV adds; else the message's first line."""
    text = (getattr(exc, "strerror", None) or str(exc)).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


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
        raise VideoError(f"not a readable video ({_first_line(exc)})") from None
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not videos:
        audio = len(container.streams.audio)
        container.close()
        raise VideoError("no video stream" + (f" (only {audio} audio stream{'s' * (audio > 1)})" if audio else ""))
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


@dataclass
class Encoding:
    codec: str
    pix_fmt: str
    options: dict[str, str]
    notes: list[str] = field(default_factory=list)


def default_codec(suffix: str) -> str:
    """H.264 (libx264 where this FFmpeg has it), VP9 for WebM."""
    import av

    wanted = ("libvpx-vp9", "libvpx") if suffix.lower() == ".webm" else ("libx264", "libopenh264", "mpeg4")
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
    probe = av.open(os.devnull, "w", format=MUXERS.get(suffix) or target.suffix.lstrip(".") or None)
    try:
        if enc.canonical_name not in probe.supported_codecs:
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
    elif crf is not None:
        notes.append(f"--crf is not an option of {name}: its default quality is used")
    return Encoding(name, pix_fmt, options, notes)


class SegmentWriter:
    """Encode frames into ``path`` (NUT); :meth:`finish` flushes and renames the complete file into
    place, :meth:`abort` removes what was written."""

    def __init__(self, path: Path, encoding: Encoding, source: Source, colorspace: int, color_range: int):
        import av

        self.path = path
        self.tmp = path.with_name(path.name + ".part")
        self.out = av.open(str(self.tmp), "w", format="nut", options={"avoid_negative_ts": "disabled"})
        self.timestamps: list[tuple[int, int, int]] = []  # (pts, dts, duration) of each packet, source time base
        self.stream = self.out.add_stream(encoding.codec, rate=source.rate)
        cc = self.stream.codec_context
        cc.width, cc.height, cc.pix_fmt = source.width, source.height, encoding.pix_fmt
        self.stream.time_base = cc.time_base = source.time_base
        if source.sar:
            cc.sample_aspect_ratio = source.sar
        cc.colorspace, cc.color_range = colorspace, color_range
        for key, value in source.colour_tags.items():
            setattr(cc, key, value)
        cc.options = dict(encoding.options)

        self._durations: dict[int, int] = {}  # encoders do not pass a frame's duration on to its packet

    def encode(self, frame, duration: int = 0) -> None:
        self._durations[frame.pts] = duration
        self._mux(self.stream.encode(frame))

    def _mux(self, packets) -> None:
        for packet in packets:
            duration = packet.duration or self._durations.pop(packet.pts, 0)
            self.timestamps.append((packet.pts, packet.dts, duration))
            self.out.mux(packet)

    def finish(self) -> None:
        self._mux(self.stream.encode(None))
        self.out.close()
        _fsync(self.tmp)
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the file is removed either way
            self.out.close()
        self.tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def join(segments: list[tuple[Path, list]], source: Path, target: Path, tmp: Path,
         display_matrix: list[int] | None) -> None:
    """Write ``target``: the video packets of the segments (path, the writer's ``timestamps``) in
    order, the source's audio packets copied, the container and stream metadata and the display
    matrix kept. Written to ``tmp`` first, then renamed.
    """
    import av

    src = av.open(str(source), metadata_errors="ignore")
    first = av.open(str(segments[0][0]))
    try:
        template = first.streams.video[0]
        extradata = template.codec_context.extradata
        video_in = next(s for s in src.streams.video if not s.disposition & av.stream.Disposition.attached_pic)
        with av.open(str(tmp), "w", format=MUXERS.get(target.suffix.lower())) as out:
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
    _fsync(tmp)
    from colorize_cli.imageio import _UMASK

    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, target)
