"""Data: the HPA layout, the image cache, augmentation, the manifest and the split."""
