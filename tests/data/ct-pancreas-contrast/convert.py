# One-off reduction of a real contrast CT (TCIA Pancreatic-CT-CBCT-SEG, patient
# Pancreas-CT-CB_001, CC BY 4.0, as stored in pyvista/vtk-data, Data/DICOM_Stack at
# commit c43678d0d972d416e06c3ca8b9e42d79bddd1716) to a smaller axial series for the
# tests: pixels untouched (int16 HU), cropped to the spine's neighbourhood (150 mm to each
# side of the spine's column, from 120 mm in front of its densest row to 110 mm behind
# it), made-up UIDs and header, geometry kept; then JPEG-LS lossless (DCMTK's dcmcjpls).
# Usage: python convert.py SRC_DIR OUT_DIR (numpy, pydicom, dcmcjpls on the PATH).
import sys, glob, uuid, subprocess, os
import numpy as np, pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, CTImageStorage

src, out = sys.argv[1], sys.argv[2]
ds = [pydicom.dcmread(f) for f in sorted(glob.glob(src + '/*.dcm'))]
ds.sort(key=lambda d: float(d.ImagePositionPatient[2]))
hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in ds])
px = [float(v) for v in ds[0].PixelSpacing]
# The spine: the column and row where bone (over 200 HU) is densest in the middle third.
bone = (hu > 200).sum(axis=0)
w = hu.shape[2]
spine_c = int(np.argmax(bone[:, w // 3: 2 * w // 3].sum(axis=0))) + w // 3
spine_r = int(np.argmax(bone[:, spine_c - 10: spine_c + 10].sum(axis=1)))
side = int(round(150 / px[1]))
c0, c1 = max(spine_c - side, 0), min(spine_c + side, w)
r0 = max(spine_r - int(round(120 / px[0])), 0)
r1 = min(spine_r + int(round(110 / px[0])), hu.shape[1])
small = np.round(hu[:, r0:r1, c0:c1]).astype(np.int16)
def uid(): return '2.25.%d' % uuid.uuid4().int
study, series, frame = uid(), uid(), uid()
n = len(ds)
for k, src_ds in enumerate(ds):
    x0, y0, z = (float(v) for v in src_ds.ImagePositionPatient)
    d = Dataset()
    d.file_meta = FileMetaDataset()
    d.file_meta.MediaStorageSOPClassUID = CTImageStorage
    sop = uid(); d.file_meta.MediaStorageSOPInstanceUID = sop
    d.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    d.ImageType = ['ORIGINAL', 'PRIMARY', 'AXIAL']
    d.SOPClassUID = CTImageStorage; d.SOPInstanceUID = sop
    d.StudyDate = '20200101'; d.StudyTime = '000000'; d.AccessionNumber = ''
    d.Modality = 'CT'; d.Manufacturer = ''; d.ReferringPhysicianName = ''
    d.PatientName = 'PANCREAS^CT^CB001'; d.PatientID = 'PANCREAS-CT-CB-001'
    d.PatientBirthDate = ''; d.PatientSex = ''
    d.BodyPartExamined = 'ABDOMEN'; d.SliceThickness = str(src_ds.SliceThickness); d.KVP = '120'
    d.PatientPosition = 'HFS'
    d.StudyInstanceUID = study; d.SeriesInstanceUID = series; d.StudyID = '1'; d.SeriesNumber = '1'
    d.AcquisitionNumber = '1'; d.InstanceNumber = str(n - k)
    d.ImagePositionPatient = ['%.3f' % (x0 + c0 * px[1]), '%.3f' % (y0 + r0 * px[0]), '%.3f' % z]
    d.ImageOrientationPatient = ['1', '0', '0', '0', '1', '0']
    d.FrameOfReferenceUID = frame; d.PositionReferenceIndicator = ''; d.SliceLocation = '%.3f' % z
    d.SamplesPerPixel = 1; d.PhotometricInterpretation = 'MONOCHROME2'
    d.Rows, d.Columns = small.shape[1:]; d.PixelSpacing = [str(v) for v in ds[0].PixelSpacing]
    d.BitsAllocated = 16; d.BitsStored = 16; d.HighBit = 15; d.PixelRepresentation = 1
    d.WindowCenter = '400'; d.WindowWidth = '1800'; d.RescaleIntercept = '0'; d.RescaleSlope = '1'
    d.RescaleType = 'HU'
    d.PixelData = small[k].tobytes()
    name = '%s/slice%03d.dcm' % (out, k + 1)
    d.save_as(name + '.raw', enforce_file_format=True)
    subprocess.run(['dcmcjpls', name + '.raw', name], check=True)
    os.remove(name + '.raw')
print('spine at row %d column %d; rows %d:%d columns %d:%d -> %s' % (spine_r, spine_c, r0, r1, c0, c1, small.shape))
