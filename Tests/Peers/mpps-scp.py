#!/usr/bin/env python3
"""A Modality Performed Procedure Step SCP for the tests (pynetdicom): a RIS as far as MPPS goes.

Usage: mpps-scp.py OUTDIR PORT [AE_TITLE]

Each N-CREATE and N-SET is checked as PS3.4 F.7.2 asks an SCP to (N-CREATE only IN PROGRESS,
the SCU's instance UID, no duplicate; N-SET only of a known step still IN PROGRESS, and only
of attributes the N-CREATE created), answered, and written as a DICOM file to OUTDIR:
UID.ncreate.dcm, UID.nsetN.dcm and UID.merged.dcm (the step as it stands). One line per
message goes to stdout ("N-CREATE UID 0x0000"), and "listening" once the port is open.
"""
import sys
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep as MPPS
from pynetdicom.sop_class import Verification

OUT = Path(sys.argv[1])
PORT = int(sys.argv[2])
AE_TITLE = sys.argv[3] if len(sys.argv) > 3 else "MPPSSCP"
OUT.mkdir(parents=True, exist_ok=True)
instances = {}
nsets = {}


def save(ds, uid, name, ts):
    ds = Dataset(ds)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MPPS
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.file_meta.TransferSyntaxUID = ts
    ds.save_as(OUT / f"{uid}.{name}.dcm", enforce_file_format=True)


def say(line):
    print(line, flush=True)


def handle_create(event):
    uid = event.request.AffectedSOPInstanceUID
    attrs = event.attribute_list
    if uid is None:
        status = 0x0106
    elif uid in instances:
        status = 0x0111
    elif attrs.get("PerformedProcedureStepStatus", "") != "IN PROGRESS":
        status = 0x0106
    else:
        status = 0x0000
    say(f"N-CREATE {uid} 0x{status:04X}")
    if status != 0:
        return status, None
    save(attrs, uid, "ncreate", event.context.transfer_syntax)
    ds = Dataset()
    ds.SOPClassUID = MPPS
    ds.SOPInstanceUID = uid
    ds.update(attrs)
    instances[uid] = ds
    save(ds, uid, "merged", event.context.transfer_syntax)
    return status, attrs


def handle_set(event):
    uid = event.request.RequestedSOPInstanceUID
    mods = event.modification_list
    ds = instances.get(uid)
    if ds is None:
        status = 0x0112
    elif ds.PerformedProcedureStepStatus != "IN PROGRESS":
        status = 0x0110
    elif any(elem.tag not in ds for elem in mods):
        status = 0x0105  # no such attribute: it was not created by the N-CREATE
    else:
        status = 0x0000
    say(f"N-SET {uid} 0x{status:04X}")
    if status != 0:
        return status, None
    nsets[uid] = nsets.get(uid, 0) + 1
    save(mods, uid, f"nset{nsets[uid]}", event.context.transfer_syntax)
    ds.update(mods)
    save(ds, uid, "merged", event.context.transfer_syntax)
    return status, mods


ae = AE(ae_title=AE_TITLE)
ae.add_supported_context(MPPS, ALL_TRANSFER_SYNTAXES)
ae.add_supported_context(Verification)  # C-ECHO, as a RIS answers it
server = ae.start_server(("127.0.0.1", PORT), block=False,
                         evt_handlers=[(evt.EVT_N_CREATE, handle_create), (evt.EVT_N_SET, handle_set)])
say("listening")
try:
    import threading
    threading.Event().wait()
except KeyboardInterrupt:
    pass
finally:
    server.shutdown()
