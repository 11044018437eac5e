"""Files in and out, the lowest layer: images and films read and written with their metadata, atomic
writes, folder walking, hashing, downloads and the cache folder. Imports nothing of the package above it."""
