# One-off conversion of TotalSegmentator's tests/reference_files/example_ct.nii.gz (Apache-2.0)
# to an axial DICOM series (LPS, anterior up), plus reference.json from its vertebra and
# vertebral-body masks. Pixels untouched (int32 HU -> int16, same values).
import sys, json, uuid, datetime
sys.path.insert(0, sys.argv[2] if len(sys.argv) > 2 else '.')  # niihdr.py: a minimal NIfTI-1 reader
import numpy as np, pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, CTImageStorage
from niihdr import load
h, ct = load('example_ct.nii.gz')
_, vert = load('totalseg.nii.gz')
_, body = load('totalseg_vertebrae_body.nii.gz')
ct = ct.astype(np.float64) * (h['slope'] or 1.0) + h['inter']
assert ct.min() >= -32768 and ct.max() < 32768
srow = np.array(h['srow']); print(srow)
ox, oy, oz = srow[0][3], srow[1][3], srow[2][3]
ni, nj, nk = ct.shape
out = sys.argv[1]
def uid(): return '2.25.%d' % uuid.uuid4().int
study, series, frame = uid(), uid(), uid()
for k in range(nk):
    # columns c = ni-1-i (toward patient left = +x LPS), rows r = nj-1-j (toward posterior = +y LPS)
    img = ct[::-1, ::-1, k].T.astype(np.int16)  # shape (rows=nj, cols=ni)
    x_lps = -(3.0 * (ni - 1) + ox); y_lps = -(3.0 * (nj - 1) + oy); z = 3.0 * k + oz
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    sop = uid(); ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.ImageType = ['ORIGINAL', 'PRIMARY', 'AXIAL']
    ds.SOPClassUID = CTImageStorage; ds.SOPInstanceUID = sop
    ds.StudyDate = '20200101'; ds.StudyTime = '000000'; ds.AccessionNumber = ''
    ds.Modality = 'CT'; ds.Manufacturer = ''; ds.ReferringPhysicianName = ''
    ds.PatientName = 'TOTALSEG^EXAMPLE'; ds.PatientID = 'TOTALSEG-CT'; ds.PatientBirthDate = ''; ds.PatientSex = ''
    ds.BodyPartExamined = 'ABDOMEN'; ds.SliceThickness = '3.0'; ds.KVP = '120'; ds.PatientPosition = 'HFS'
    ds.StudyInstanceUID = study; ds.SeriesInstanceUID = series; ds.StudyID = '1'; ds.SeriesNumber = '1'
    ds.AcquisitionNumber = '1'; ds.InstanceNumber = str(nk - k)
    ds.ImagePositionPatient = ['%.3f' % x_lps, '%.3f' % y_lps, '%.3f' % z]
    ds.ImageOrientationPatient = ['1', '0', '0', '0', '1', '0']
    ds.FrameOfReferenceUID = frame; ds.PositionReferenceIndicator = ''; ds.SliceLocation = '%.3f' % z
    ds.SamplesPerPixel = 1; ds.PhotometricInterpretation = 'MONOCHROME2'
    ds.Rows, ds.Columns = img.shape; ds.PixelSpacing = ['3.0', '3.0']
    ds.BitsAllocated = 16; ds.BitsStored = 16; ds.HighBit = 15; ds.PixelRepresentation = 1
    ds.WindowCenter = '400'; ds.WindowWidth = '1800'; ds.RescaleIntercept = '0'; ds.RescaleSlope = '1'
    ds.RescaleType = 'HU'
    ds.PixelData = img.tobytes()
    ds.save_as('%s/slice%03d.dcm' % (out, k + 1), enforce_file_format=True)
# Reference: HU inside (vertebra label) AND (vertebral body == 1), eroded by one voxel (6-neighbourhood).
names = {26: 'S1', 27: 'L5', 28: 'L4', 29: 'L3', 30: 'L2', 31: 'L1', 32: 'T12', 33: 'T11'}
def erode(m):
    e = m.copy()
    for ax in range(3):
        for sh in (1, -1):
            e &= np.roll(m, sh, axis=ax)
    return e
levels = {}
for lab, name in names.items():
    m = (vert == lab) & (body == 1)
    if m.sum() == 0: continue
    e = erode(m)
    zs = np.nonzero(m.any(axis=(0, 1)))[0]
    v = ct[e] if e.sum() > 20 else ct[m]
    levels[name] = dict(median_hu=float(np.median(v)), mean_hu=float(np.mean(v)), voxels=int(len(v)),
                        z_mm=[float(3.0 * zs.min() + oz), float(3.0 * zs.max() + oz)],
                        complete=bool(zs.min() > 0 and zs.max() < nk - 1))
ref = dict(source='wasserth/TotalSegmentator tests/reference_files/example_ct.nii.gz (Apache-2.0), masks tests/reference_files/spine_report/example_ct_report/totalseg.nii.gz and totalseg_vertebrae_body.nii.gz',
           levels=levels,
           method='median/mean HU inside vertebra label AND vertebral-body mask (TotalSegmentator), eroded by one voxel (3 mm); z_mm = the body mask slices\' z (DICOM patient z, mm)')
json.dump(ref, open('%s/reference.json' % out, 'w'), indent=1)
print(json.dumps(levels, indent=1))
