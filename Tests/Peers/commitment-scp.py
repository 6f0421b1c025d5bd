#!/usr/bin/env python3
"""A storage commitment SCP for the tests (pynetdicom), the way PS3.4 J.3.3.1.3 has one report.

Usage: commitment-scp.py PORT AE_TITLE REPORT_AE REPORT_PORT

Answers each N-ACTION (Request Storage Commitment) with success, then reports on an
association of its own to REPORT_AE at 127.0.0.1:REPORT_PORT, proposing the SCP role for
itself (SCU/SCP role selection): event type 1 with every instance committed. One line per
message goes to stdout ("N-ACTION UID", "N-EVENT-REPORT UID 0x0000"), and "listening" once
the port is open.
"""
import sys
import threading
import time

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import StorageCommitmentPushModel, Verification

PORT = int(sys.argv[1])
AE_TITLE = sys.argv[2]
REPORT_AE = sys.argv[3]
REPORT_PORT = int(sys.argv[4])
INSTANCE = "1.2.840.10008.1.20.1.1"


def say(line):
    print(line, flush=True)


def report(request):
    time.sleep(0.2)
    ae = AE(ae_title=AE_TITLE)
    ae.add_requested_context(StorageCommitmentPushModel)
    role = build_role(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    assoc = ae.associate("127.0.0.1", REPORT_PORT, ae_title=REPORT_AE, ext_neg=[role])
    if not assoc.is_established:
        say(f"N-EVENT-REPORT {request.TransactionUID} not associated")
        return
    ds = Dataset()
    ds.TransactionUID = request.TransactionUID
    ds.ReferencedSOPSequence = request.ReferencedSOPSequence
    status, _ = assoc.send_n_event_report(ds, 1, StorageCommitmentPushModel, INSTANCE)
    code = getattr(status, "Status", 0xFFFF)
    say(f"N-EVENT-REPORT {request.TransactionUID} 0x{code:04X}")
    assoc.release()


def handle_action(event):
    request = event.action_information
    say(f"N-ACTION {request.TransactionUID}")
    threading.Thread(target=report, args=(request,), daemon=True).start()
    return 0x0000, None


ae = AE(ae_title=AE_TITLE)
ae.add_supported_context(StorageCommitmentPushModel)
ae.add_supported_context(Verification)
server = ae.start_server(("127.0.0.1", PORT), block=False, evt_handlers=[(evt.EVT_N_ACTION, handle_action)])
say("listening")
try:
    threading.Event().wait()
except KeyboardInterrupt:
    pass
finally:
    server.shutdown()
