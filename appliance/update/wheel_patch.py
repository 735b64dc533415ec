"""Binary patches of changed wheels: zstd compression with the old wheel as a raw-content
dictionary (what `zstd --patch-from` does), through the `zstandard` library (pinned in
pyproject.toml; cp311 aarch64 and x86_64 wheels on PyPI, Debian package python3-zstandard).

A wheel is a zip whose members are compressed one by one, so a one-line change alters one
member and the zip's directory: the rest of the new wheel is found, byte for byte, in the old
one, and the patch is a small fraction of the wheel.
"""

from __future__ import annotations

import zstandard

LEVEL = 19


def _window_log(base_size: int, target_size: int) -> int:
    # The whole base must stay within the match window while the target is compressed.
    span = base_size + target_size
    return min(max((span - 1).bit_length(), zstandard.WINDOWLOG_MIN), 30)


def make_patch(base: bytes, target: bytes) -> bytes:
    """The patch that turns `base` into `target`."""
    params = zstandard.ZstdCompressionParameters.from_level(
        LEVEL,
        source_size=len(target),
        window_log=_window_log(len(base), len(target)),
        enable_ldm=True,
    )
    dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    compressor = zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params)
    return compressor.compress(target)


def apply_patch(base: bytes, patch: bytes, size: int) -> bytes:
    """`target` again from `base` and its patch, at most `size` bytes (the manifest's size of
    the wheel: a patch that claims more is cut short, and then fails the sha256 check)."""
    dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    decompressor = zstandard.ZstdDecompressor(
        dict_data=dictionary, max_window_size=1 << _window_log(len(base), size)
    )
    try:
        return decompressor.decompress(patch, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise ValueError(f"patch does not apply: {exc}") from None
