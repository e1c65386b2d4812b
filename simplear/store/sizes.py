"""Byte sizes for S3 multipart parts and streamed copies."""

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB
COPY_CHUNK = 1 * MiB
