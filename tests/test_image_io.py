"""Reading users' radiographs (cldetection.image_io): formats, DICOM pixel pipeline and spacing, one-line errors.

Every file is synthetic, written in tmp_path with OpenCV, PIL or pydicom."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (JPEG2000MC, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian,
                         JPEG2000Lossless, JPEGBaseline8Bit, RLELossless, generate_uid)

from cldetection import image_io
from cldetection.errors import InputError
from cldetection.image_io import Radiograph, find_images, read_radiograph


def gradient(height: int = 48, width: int = 64, lo: int = 0, hi: int = 255, dtype=np.uint8) -> np.ndarray:
    return np.linspace(lo, hi, height * width).reshape(height, width).round().astype(dtype)


def dicom_dataset(pixels: np.ndarray, photometric: str = 'MONOCHROME2', bits_stored: int | None = None,
                  **attrs) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = generate_uid()
    ds.set_pixel_data(pixels, photometric, bits_stored or pixels.dtype.itemsize * 8)
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def compressed(ds: Dataset, fragment: bytes, syntax) -> Dataset:
    """``ds`` with ``fragment`` as its encapsulated pixel data under the compressed transfer ``syntax``."""
    ds.PixelData = encapsulate([fragment])
    ds['PixelData'].VR = 'OB'
    ds.file_meta.TransferSyntaxUID = syntax
    return ds


def jpeg_bytes(grey: np.ndarray) -> bytes:
    return cv2.imencode('.jpg', grey, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = 'MONOCHROME2', **attrs) -> Path:
    dicom_dataset(pixels, photometric, **attrs).save_as(path, enforce_file_format=True)
    return path


def error_of(path, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        read_radiograph(path, **kwargs)
    message = str(info.value)
    assert '\n' not in message
    return message


# ---- raster formats ----------------------------------------------------------------------------------------

def test_grey_png_becomes_three_equal_channels(tmp_path):
    grey = gradient()
    cv2.imwrite(str(tmp_path / 'g.png'), grey)
    result = read_radiograph(tmp_path / 'g.png')
    assert isinstance(result, Radiograph) and result.path == tmp_path / 'g.png'
    assert result.image.shape == (48, 64, 3) and result.image.dtype == np.uint8
    assert all(np.array_equal(result.image[:, :, c], grey) for c in range(3))
    assert result.spacing_mm is None and result.spacing_source == ''


def test_rgb_jpeg_is_rgb_not_bgr(tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30] = (230, 20, 20)  # red left half
    rgb[:, 30:] = (20, 20, 230)  # blue right half
    cv2.imwrite(str(tmp_path / 'c.jpg'), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    image = read_radiograph(tmp_path / 'c.jpg').image
    assert image[20, 5, 0] > 200 and image[20, 5, 2] < 60
    assert image[20, 55, 2] > 200 and image[20, 55, 0] < 60


def test_bmp_is_exact(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'c.bmp'), rgb[:, :, ::-1])
    assert np.array_equal(read_radiograph(tmp_path / 'c.bmp').image, rgb)


def test_16bit_tiff_is_windowed_between_percentiles(tmp_path):
    pixels = gradient(100, 100, 1000, 3000, np.uint16)
    pixels[0, 0] = 65535  # a hot pixel must not squash the window
    cv2.imwrite(str(tmp_path / 'deep.tif'), pixels)
    image = read_radiograph(tmp_path / 'deep.tif').image[:, :, 0]
    assert image.min() == 0 and image.max() == 255
    assert 110 < image[50, 50] < 145  # the middle grey stays mid-grey
    assert np.all(np.diff(image.reshape(-1)[1:].astype(int)) >= 0)  # monotonic, as the input


def test_rgba_png_drops_alpha(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 0  # fully transparent
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'a.png')
    image = read_radiograph(tmp_path / 'a.png').image
    assert image.shape == (20, 30, 3)
    rgba[0, 0, :3] = 0  # not blank
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'a.png')
    assert tuple(read_radiograph(tmp_path / 'a.png').image[5, 5]) == (200, 100, 50)


def test_jpeg_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:10, :10] = 255  # a bright top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    Image.fromarray(rgb).save(tmp_path / 'o.jpg', exif=exif, quality=95)
    image = read_radiograph(tmp_path / 'o.jpg').image
    assert image.shape == (60, 40, 3)
    assert image[3, 36].mean() > 200 and image[3, 3].mean() < 50  # the corner is now top-right


def test_content_not_suffix_decides(tmp_path):
    write_dicom(tmp_path / 'really_dicom.png', gradient(), PixelSpacing=[0.1, 0.1])
    result = read_radiograph(tmp_path / 'really_dicom.png')
    assert result.spacing_mm == pytest.approx(0.1)
    cv2.imwrite(str(tmp_path / 'really.png'), gradient())
    (tmp_path / 'really.png').rename(tmp_path / 'named.dcm')
    assert read_radiograph(tmp_path / 'named.dcm').image.shape == (48, 64, 3)


# ---- DICOM -------------------------------------------------------------------------------------------------

def test_dicom_monochrome2_with_pixel_spacing(tmp_path):
    pixels = gradient(60, 80, 100, 3900, np.uint16)
    path = write_dicom(tmp_path / 'm2.dcm', pixels, bits_stored=12, PixelSpacing=[0.1, 0.1])
    result = read_radiograph(path)
    assert result.image.shape == (60, 80, 3) and result.image.dtype == np.uint8
    assert result.spacing_mm == pytest.approx(0.1)
    assert result.spacing_source == 'DICOM Pixel Spacing (0028,0030)'
    assert result.image[0, 0, 0] == 0 and result.image[-1, -1, 0] == 255


def test_dicom_monochrome1_is_inverted(tmp_path):
    pixels = gradient(60, 80, 0, 4000, np.uint16)
    result = read_radiograph(write_dicom(tmp_path / 'm1.dcm', pixels, 'MONOCHROME1', bits_stored=12))
    assert result.image[-1, -1, 0] == 0  # the highest stored value: bright in MONOCHROME2, dark here
    assert result.image[0, 0, 0] == 255


def test_dicom_rescale_then_window(tmp_path):
    pixels = gradient(64, 64, 0, 4095, np.uint16)
    path = write_dicom(tmp_path / 'w.dcm', pixels, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1000,
                       WindowCenter=3000, WindowWidth=2000)
    image = read_radiograph(path).image[:, :, 0]
    values = pixels.astype(float) * 2 - 1000  # the modality values the window applies to
    assert np.all(image[values <= 1990] == 0) and np.all(image[values >= 4010] == 255)
    middle = np.abs(values - 3000) < 20
    assert middle.any() and np.all(np.abs(image[middle].astype(int) - 128) <= 4)


def test_dicom_voi_lut_sequence(tmp_path):
    pixels = gradient(64, 64, 0, 4095, np.uint16)
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 12]
    lut.add_new('LUTData', 'OW', np.arange(4095, -1, -1, dtype='<u2').tobytes())  # inverting, output 0..4095
    path = write_dicom(tmp_path / 'lut.dcm', pixels, bits_stored=12, VOILUTSequence=[lut],
                       WindowCenter=100, WindowWidth=10)  # the LUT wins over the window
    image = read_radiograph(path).image[:, :, 0]
    assert image[0, 0] == 255 and image[-1, -1] == 0 and abs(int(image[32, 0]) - 128) <= 2


def test_dicom_rgb(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert np.array_equal(read_radiograph(write_dicom(tmp_path / 'rgb.dcm', rgb, 'RGB')).image, rgb)


def test_imager_pixel_spacing_with_and_without_magnification(tmp_path):
    with_factor = read_radiograph(write_dicom(tmp_path / 'a.dcm', gradient(), ImagerPixelSpacing=[0.11, 0.11],
                                              EstimatedRadiographicMagnificationFactor='1.10'))
    assert with_factor.spacing_mm == pytest.approx(0.1)
    assert with_factor.spacing_source == ('DICOM Imager Pixel Spacing (0018,1164) / '
                                          'Estimated Radiographic Magnification Factor 1.10')
    plain = read_radiograph(write_dicom(tmp_path / 'b.dcm', gradient(), ImagerPixelSpacing=[0.11, 0.11]))
    assert plain.spacing_mm == pytest.approx(0.11)
    assert plain.spacing_source == 'DICOM Imager Pixel Spacing (0018,1164)'
    both = read_radiograph(write_dicom(tmp_path / 'c.dcm', gradient(), PixelSpacing=[0.1, 0.1],
                                       ImagerPixelSpacing=[0.2, 0.2]))
    assert both.spacing_mm == pytest.approx(0.1) and both.spacing_source.startswith('DICOM Pixel Spacing')


def test_non_square_pixels_use_the_mean(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger='cldetection.image_io'):
        result = read_radiograph(write_dicom(tmp_path / 'n.dcm', gradient(), PixelSpacing=[0.1, 0.12]))
    assert result.spacing_mm == pytest.approx(0.11)
    assert 'mean of row 0.1 and column 0.12' in result.spacing_source
    assert 'differ' in caplog.text


def test_invalid_dicom_spacing_is_ignored(tmp_path):
    result = read_radiograph(write_dicom(tmp_path / 'z.dcm', gradient(), PixelSpacing=[0, 0]), spacing_mm=0.1)
    assert result.spacing_mm == 0.1 and result.spacing_source == '--spacing'


def test_spacing_precedence(tmp_path, caplog):
    dicom = write_dicom(tmp_path / 's.dcm', gradient(), PixelSpacing=[0.1, 0.1])
    with caplog.at_level(logging.INFO, logger='cldetection.image_io'):
        result = read_radiograph(dicom, spacing_mm=0.2)
    assert result.spacing_mm == pytest.approx(0.1) and result.spacing_source.startswith('DICOM')
    assert '--spacing 0.2' in caplog.text
    no_spacing = write_dicom(tmp_path / 'n.dcm', gradient())
    assert read_radiograph(no_spacing).spacing_mm is None
    assert read_radiograph(no_spacing, spacing_mm=0.15).spacing_mm == 0.15
    cv2.imwrite(str(tmp_path / 'p.png'), gradient())
    assert (read_radiograph(tmp_path / 'p.png', spacing_mm=0.1).spacing_mm, read_radiograph(
        tmp_path / 'p.png', spacing_mm=0.1).spacing_source) == (0.1, '--spacing')
    assert read_radiograph(tmp_path / 'p.png').spacing_mm is None


@pytest.mark.parametrize('bad', [0, -0.1, float('nan'), float('inf')])
def test_bad_user_spacing(tmp_path, bad):
    cv2.imwrite(str(tmp_path / 'p.png'), gradient())
    assert '--spacing' in error_of(tmp_path / 'p.png', spacing_mm=bad)


def test_multiframe_uses_first_frame(tmp_path, caplog):
    frames = np.stack([gradient(), gradient()[::-1]])
    path = write_dicom(tmp_path / 'mf.dcm', frames)
    with caplog.at_level(logging.WARNING, logger='cldetection.image_io'):
        image = read_radiograph(path).image
    assert np.array_equal(image[:, :, 0], gradient())
    assert '2 frames; using the first' in caplog.text


def test_jpeg_baseline_dicom_decodes(tmp_path):
    grey = gradient(64, 80)
    ds = compressed(dicom_dataset(grey, PixelSpacing=[0.1, 0.1]), jpeg_bytes(grey), JPEGBaseline8Bit)
    ds.save_as(tmp_path / 'jpeg.dcm', enforce_file_format=True)
    image = read_radiograph(tmp_path / 'jpeg.dcm').image[:, :, 0]
    assert np.abs(image.astype(int) - grey).max() <= 8


@pytest.mark.parametrize('syntax', [RLELossless, JPEG2000Lossless])
def test_compressed_dicom_decodes(tmp_path, syntax):
    pixels = gradient(64, 80, 0, 4000, np.uint16)
    ds = dicom_dataset(pixels, bits_stored=12)
    try:
        ds.compress(syntax)
    except (RuntimeError, NotImplementedError) as err:
        pytest.skip(f'no encoder for {syntax.name}: {err}')
    ds.save_as(tmp_path / 'c.dcm', enforce_file_format=True)
    expected = read_radiograph(write_dicom(tmp_path / 'u.dcm', pixels, bits_stored=12)).image
    assert np.array_equal(read_radiograph(tmp_path / 'c.dcm').image, expected)


def test_missing_codec_names_syntax_and_package(tmp_path, monkeypatch):
    from pydicom.pixels import get_decoder

    ds = dicom_dataset(gradient())
    try:
        ds.compress(JPEG2000Lossless)
    except (RuntimeError, NotImplementedError):
        pytest.skip('no JPEG 2000 encoder')
    ds.save_as(tmp_path / 'j2k.dcm', enforce_file_format=True)
    monkeypatch.setattr(get_decoder(JPEG2000Lossless), '_available', {})  # as if no plugin were installed
    message = error_of(tmp_path / 'j2k.dcm')
    assert 'JPEG 2000 Image Compression (Lossless Only)' in message
    assert 'pip install pylibjpeg pylibjpeg-openjpeg' in message and 'j2k.dcm' in message


def test_syntax_without_any_decoder(tmp_path):
    ds = compressed(dicom_dataset(gradient()), b'\x00' * 64, JPEG2000MC)
    ds.save_as(tmp_path / 'mc.dcm', enforce_file_format=True)
    assert 'JPEG 2000 Part 2 Multi-component' in error_of(tmp_path / 'mc.dcm')


def test_corrupt_compressed_dicom(tmp_path):
    ds = compressed(dicom_dataset(gradient()), b'\xff\xd8\xff\xe0' + b'\x00' * 60, JPEGBaseline8Bit)
    ds.save_as(tmp_path / 'bad.dcm', enforce_file_format=True)
    assert 'cannot decode the DICOM pixel data (JPEG Baseline' in error_of(tmp_path / 'bad.dcm')


def test_dicom_errors(tmp_path):
    ds = dicom_dataset(gradient())
    del ds.PixelData
    ds.save_as(tmp_path / 'nopix.dcm', enforce_file_format=True)
    assert 'no pixel data' in error_of(tmp_path / 'nopix.dcm')
    data = write_dicom(tmp_path / 'full.dcm', gradient(64, 64, 0, 4000, np.uint16)).read_bytes()
    (tmp_path / 'cut.dcm').write_bytes(data[:-3000])
    assert 'cannot decode the DICOM pixel data' in error_of(tmp_path / 'cut.dcm')
    (tmp_path / 'text.dcm').write_text('not a dicom at all\n' * 20)
    assert 'cut.dcm' not in error_of(tmp_path / 'text.dcm')
    assert 'blank' in error_of(write_dicom(tmp_path / 'flat.dcm', np.full((10, 10), 7, np.uint16)))


# ---- errors on raster files ------------------------------------------------------------------------------

def test_truncated_png_and_jpeg(tmp_path):
    noise = np.random.default_rng(2).integers(0, 256, (120, 160), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'a.png'), noise)
    data = (tmp_path / 'a.png').read_bytes()
    (tmp_path / 'cut.png').write_bytes(data[:len(data) // 2])
    assert 'cannot decode the PNG image' in error_of(tmp_path / 'cut.png')
    cv2.imwrite(str(tmp_path / 'a.jpg'), noise)
    data = (tmp_path / 'a.jpg').read_bytes()
    (tmp_path / 'cut.jpg').write_bytes(data[:-20])  # libjpeg alone would pad this with grey
    assert 'truncated' in error_of(tmp_path / 'cut.jpg')


def test_garbage_empty_and_missing_files(tmp_path):
    (tmp_path / 'garbage.png').write_bytes(b'this is not an image' * 10)
    assert 'unsupported format' in error_of(tmp_path / 'garbage.png')
    (tmp_path / 'fake.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00' * 100)
    assert 'cannot decode the PNG image' in error_of(tmp_path / 'fake.png')
    (tmp_path / 'zero.png').write_bytes(b'')
    assert 'empty file' in error_of(tmp_path / 'zero.png')
    assert 'not found' in error_of(tmp_path / 'missing.png')
    assert 'not a file' in error_of(tmp_path)


def test_blank_image(tmp_path):
    cv2.imwrite(str(tmp_path / 'flat.png'), np.full((10, 10), 9, np.uint8))
    assert 'blank' in error_of(tmp_path / 'flat.png')
    cv2.imwrite(str(tmp_path / 'flat16.png'), np.full((10, 10), 900, np.uint16))
    assert 'blank' in error_of(tmp_path / 'flat16.png')


def test_oversize_image(tmp_path, monkeypatch):
    monkeypatch.setattr(image_io, 'MAX_IMAGE_SIDE', 50)
    cv2.imwrite(str(tmp_path / 'big.png'), gradient(40, 60))
    assert 'over the limit of 50' in error_of(tmp_path / 'big.png')
    assert 'over the limit of 50' in error_of(write_dicom(tmp_path / 'big.dcm', gradient(60, 40)))
    cv2.imwrite(str(tmp_path / 'ok.png'), gradient(50, 50))
    assert read_radiograph(tmp_path / 'ok.png').image.shape == (50, 50, 3)


# ---- find_images -------------------------------------------------------------------------------------------

def test_find_images_recursive(tmp_path):
    (tmp_path / 'a' / 'b').mkdir(parents=True)
    (tmp_path / 'a' / '.hidden').mkdir()
    cv2.imwrite(str(tmp_path / 'a' / 'b' / 'x.PNG'), gradient())
    cv2.imwrite(str(tmp_path / 'a' / 'y.jpeg'), gradient())
    cv2.imwrite(str(tmp_path / 'a' / '.hidden' / 'z.png'), gradient())
    write_dicom(tmp_path / 'a' / 'b' / 'IM0001', gradient())
    write_dicom(tmp_path / 'a' / '1.2.840.10008.99', gradient())
    (tmp_path / 'a' / 'notes.txt').write_text('x' * 200)
    (tmp_path / 'a' / 'README').write_text('x' * 200)
    (tmp_path / 'other.txt').write_text('given directly: kept, judged later')
    found = find_images([tmp_path / 'a', str(tmp_path / 'a' / 'y.jpeg'), tmp_path / 'a', tmp_path / 'other.txt'])
    assert found == sorted([tmp_path / 'a' / 'b' / 'x.PNG', tmp_path / 'a' / 'y.jpeg', tmp_path / 'a' / 'b' / 'IM0001',
                            tmp_path / 'a' / '1.2.840.10008.99', tmp_path / 'other.txt'], key=str)
    assert all(isinstance(p, Path) for p in found)


def test_find_images_errors(tmp_path):
    with pytest.raises(InputError, match='not found'):
        find_images([tmp_path / 'nope'])
    (tmp_path / 'empty' / 'sub').mkdir(parents=True)
    (tmp_path / 'empty' / 'sub' / 'notes.txt').write_text('no image here')
    with pytest.raises(InputError, match='no images'):
        find_images([tmp_path / 'empty'])


def test_the_locked_decoders_decode_with_this_numpy(tmp_path):
    """The lock pins plugins whose wheels declare numpy>=2 next to numpy 1.26 on Python < 3.13: each decodes."""
    pytest.importorskip('pylibjpeg')
    pixels = gradient(32, 40, 0, 4000, np.uint16)
    for syntax in (RLELossless, JPEG2000Lossless):
        ds = dicom_dataset(pixels, bits_stored=12)
        ds.compress(syntax, encoding_plugin='pylibjpeg')
        ds.pixel_array_options(decoding_plugin='pylibjpeg')
        assert np.array_equal(ds.pixel_array, pixels), syntax.name
    grey = gradient(32, 40)
    ds = compressed(dicom_dataset(grey), jpeg_bytes(grey), JPEGBaseline8Bit)
    pytest.importorskip('gdcm')
    ds.pixel_array_options(decoding_plugin='gdcm')  # GDCM: also JPEG Lossless and JPEG-LS (pydicom's other decoder)
    assert np.abs(ds.pixel_array.astype(int) - grey).max() <= 8
