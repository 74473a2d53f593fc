"""Join synth output and phantom folders into one training manifest
(path,label,t_score,bmd,patient_id,view), absolute paths. Patient ids are prefixed with
the source folder's name so that two seeds of one generator never share a patient.

usage: python mix_manifest.py OUT.csv SYNTH_DIR SYNTH_STUDIES [PHANTOM_DIR ...]"""
import csv, os, sys
out, synth_dir, synth_n, *plain = sys.argv[1:]
rows = []
with open(os.path.join(synth_dir, 'manifest.csv')) as f:
    for i, r in enumerate(csv.DictReader(f)):
        if i >= int(synth_n):
            break
        if r['modality'] != 'DX':
            continue
        d = os.path.join(synth_dir, r['folder'])
        for name in sorted(os.listdir(d)):
            if name.endswith('.dcm'):
                view = 'AP' if '_ap' in name else 'LAT' if '_lat' in name else ''
                rows.append([os.path.abspath(os.path.join(d, name)), r['class'], r['t_score'],
                             r['bmd_g_cm2'], 'synth-' + r['study_uid'], view])
for p in plain:
    tag = os.path.basename(os.path.normpath(p))
    with open(os.path.join(p, 'manifest.csv')) as f:
        for r in csv.DictReader(f):
            rows.append([os.path.abspath(os.path.join(p, r['path'])), r['label'], r['t_score'],
                         r['bmd'], tag + '-' + r['patient_id'], r['view']])
with open(out, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['path', 'label', 't_score', 'bmd', 'patient_id', 'view'])
    w.writerows(rows)
print(len(rows), 'images ->', out)
