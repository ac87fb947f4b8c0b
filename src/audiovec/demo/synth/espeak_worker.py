"""A tiny eSpeak NG server, run as a separate process by :class:`speech.ESpeak` (stdlib only).

eSpeak NG keeps synthesis state between utterances (and across re-initialisation), so the same call gives
different samples depending on what was spoken before. To make every utterance depend only on its own
arguments, this process initialises the library once and *forks a fresh child per request*: each child
starts from the identical just-initialised state, speaks, writes its samples and exits. The library
seeds its noise generator (breathy and whispering voices) from the clock, so each child re-seeds it.

Protocol: one JSON request per line on stdin ``{"voice", "text", "rate", "pitch", "range", "seed"?}``; replies on
stdout are ``int32 status, uint32 nbytes`` then ``nbytes`` of little-endian int16 samples. On start it
writes the sample rate as an int32 (or a negative number when the library cannot start).
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import sys

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000
CHARS_UTF8 = 1
POS_CHARACTER = 1
PARAM_RATE, PARAM_PITCH, PARAM_RANGE = 1, 3, 4
CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _load() -> tuple[ctypes.CDLL, int]:
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int]
    lib.espeak_Synth.argtypes += [ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    data_parent = os.path.dirname(espeakng_loader.get_data_path()).encode()
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent, INITIALIZE_DONT_EXIT)
    return lib, rate


def _speak(lib: ctypes.CDLL, request: dict) -> tuple[int, bytes]:
    pcm = bytearray()

    def collect(wav, count, _events):  # noqa: ANN001 - ctypes callback
        if wav and count > 0:
            pcm.extend(ctypes.string_at(wav, count * 2))
        return 0

    callback = CALLBACK(collect)
    lib.espeak_SetSynthCallback(callback)
    # the noise generator (breathy and whispering voices) is seeded from the clock at initialisation
    lib.espeak_ng_SetRandSeed(int(request.get("seed", 0)))
    if lib.espeak_SetVoiceByName(str(request["voice"]).encode()) != 0:
        return 2, b""
    lib.espeak_SetParameter(PARAM_RATE, int(request.get("rate", 175)), 0)
    lib.espeak_SetParameter(PARAM_PITCH, int(request.get("pitch", 50)), 0)
    lib.espeak_SetParameter(PARAM_RANGE, int(request.get("range", 50)), 0)
    text = str(request["text"]).encode("utf-8") + b"\0"
    status = lib.espeak_Synth(text, len(text), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
    lib.espeak_Synchronize()
    return int(status), bytes(pcm)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve() -> None:
    """Answer requests from stdin until it closes."""
    out = sys.stdout.fileno()
    try:
        lib, rate = _load()
    except OSError:
        lib, rate = None, -1
    _write(out, struct.pack("<i", rate))
    if lib is None or rate <= 0:
        return
    for line in sys.stdin:
        if not line.strip():
            continue
        pid = os.fork()
        if pid == 0:  # child: fresh copy of the initialised engine
            try:
                status, pcm = _speak(lib, json.loads(line))
            except Exception:  # malformed request: report, never hang the parent
                status, pcm = 1, b""
            _write(out, struct.pack("<iI", status, len(pcm)) + pcm)
            os._exit(0)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    serve()
