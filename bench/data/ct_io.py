"""Helpers shared by the CT readers and the ct-lung task: HU sanity checks and a classical lung mask."""

from __future__ import annotations

import numpy as np

AIR_THRESHOLD_HU = -320.0  # between lung parenchyma (≈ −850) and soft tissue (≈ 40); classic choice


def lung_mask_from_hu(hu: np.ndarray, threshold: float = AIR_THRESHOLD_HU) -> np.ndarray:
    """A rough lung mask for sources that ship lesion labels only (e.g. MSD Task06).

    Air-like voxels (< ``threshold``) not connected to the volume border are the lungs and airways; the two
    largest such components are kept and holes (vessels, nodules) filled slice by slice. Good enough to
    guide and to measure false positives outside the lungs; not a substitute for a real lung label.
    """
    from scipy import ndimage  # ~0.4 s to import; only this heuristic needs it, readers must stay light

    air = np.asarray(hu) < threshold
    labels, n = ndimage.label(air)
    if n == 0:
        return np.zeros(air.shape, np.uint8)
    border = np.unique(np.concatenate([labels[0].ravel(), labels[-1].ravel(), labels[:, 0].ravel(),
                                       labels[:, -1].ravel(), labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]))
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    sizes[border[border > 0] - 1] = 0  # outside air touches the border
    keep = [i + 1 for i in np.argsort(sizes)[::-1][:2] if sizes[i] > 0]
    lung = np.isin(labels, keep)
    lung = np.stack([ndimage.binary_fill_holes(s) for s in lung])
    return lung.astype(np.uint8)


def hu_summary(hu: np.ndarray) -> dict[str, float]:
    """Robust HU range (1st/99th percentile) plus min/max, as plain floats for JSON."""
    lo, hi = np.percentile(hu, [1, 99])
    return {"min": float(hu.min()), "p1": float(lo), "p99": float(hi), "max": float(hu.max())}


# --- NIfTI (used by the msd, nifti and ct_dicom readers for volumes and label maps) --------------------
def write_nifti(path, volume: np.ndarray, spacing) -> None:
    """Write a (z, y, x) array as NIfTI with voxel axes (x, y, z) and a diagonal affine of the spacing."""
    import nibabel as nib

    affine = np.diag([float(spacing[2]), float(spacing[1]), float(spacing[0]), 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(np.asarray(volume).transpose(2, 1, 0)), affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))


def load_nifti(path):
    """(nibabel image, its voxel array in file axis order); a missing or unreadable file is one DataError."""
    import nibabel as nib

    from bench.errors import DataError, describe_error

    try:
        img = nib.load(str(path))
        return img, np.asanyarray(img.dataobj)
    except FileNotFoundError:
        raise DataError(f"{path}: the NIfTI file must exist, but it is missing.") from None
    except Exception as exc:  # nibabel/gzip/zlib raise many types for a truncated or corrupt file
        raise DataError(f"{path}: must be a readable NIfTI volume, but reading failed: {describe_error(exc)}.") from exc


def read_nifti(path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a 3D NIfTI as a (z, y, x) array and its (z, y, x) spacing; any failure names the file."""
    from bench.errors import DataError

    img, data = load_nifti(path)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{path}: a CT volume must be 3D, but got shape {data.shape}.")
    zooms = img.header.get_zooms()[:3]
    return np.ascontiguousarray(data.transpose(2, 1, 0)), (float(zooms[2]), float(zooms[1]), float(zooms[0]))


def check_label_matches(image_path, label_path, image_shape, image_spacing, label_shape, label_spacing) -> None:
    """A label map must lie on its image's grid: same shape, same spacing (to 1e-3 mm)."""
    from bench.errors import DataError

    if tuple(label_shape) != tuple(image_shape):
        raise DataError(f"{label_path}: a label must match its image {image_path} in shape {tuple(image_shape)}, "
                        f"but got {tuple(label_shape)}. Export both from the same series.")
    if not np.allclose(label_spacing, image_spacing, atol=1e-3):
        raise DataError(f"{label_path}: a label's spacing must match its image {image_path} "
                        f"({tuple(round(s, 4) for s in image_spacing)} mm), but got "
                        f"{tuple(round(s, 4) for s in label_spacing)} mm. Resample the label onto the image grid.")
