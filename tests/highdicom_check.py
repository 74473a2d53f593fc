"""Read an osteoscreen SR with highdicom (an independent TID 1500 implementation) and print
what it finds as JSON; tests/report_dicom.rs asserts on it.

Usage: highdicom_check.py SR.dcm
"""

import json
import sys

import highdicom as hd
import pydicom

ds = pydicom.dcmread(sys.argv[1])
sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
groups = []
for g in sr.content.get_image_measurement_groups():
    groups.append({
        "tracking_identifier": g.tracking_identifier,
        "finding_type": g.finding_type.meaning if g.finding_type else None,
        "finding_sites": [s.value.meaning for s in g.finding_sites],
        "measurements": [
            {"name": m.name.meaning, "value": float(m.value), "unit": m.unit.value}
            for m in g.get_measurements()
        ],
    })
print(json.dumps({
    "template": ds.ContentTemplateSequence[0].TemplateIdentifier,
    "observer_types": [
        o.observer_type.meaning for o in sr.content.get_observer_contexts()
    ],
    "groups": groups,
}))
