"""Core files: decompression, ELF notes, memory, mapped files, build-ids."""
