// The C interface of cdcmtk.h over DCMTK's dcmdata and dcmnet. Nothing here decides what a
// dataset says; it encodes, decodes and carries what DXDicom built. No exception crosses the
// interface (DCMTK reports through OFCondition; allocation failure ends the process as
// anywhere else).
#include "cdcmtk.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcddirif.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmnet/scp.h>
#include <dcmtk/dcmnet/scu.h>
#include <dcmtk/oflog/oflog.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

struct dx_dcm_dataset {};  // never instantiated: a handle is a DcmItem*

namespace {

DcmItem *item(dx_dcm_dataset *ds) { return reinterpret_cast<DcmItem *>(ds); }
const DcmItem *item(const dx_dcm_dataset *ds) { return reinterpret_cast<const DcmItem *>(ds); }
dx_dcm_dataset *handle(DcmItem *i) { return reinterpret_cast<dx_dcm_dataset *>(i); }

// A dataset with a copy of every element of `src` (a dataset or an item).
DcmDataset *datasetCopy(const dx_dcm_dataset *src) {
    DcmItem *from = const_cast<DcmItem *>(item(src));  // getElement is not const; reading changes nothing
    DcmDataset *d = new DcmDataset();
    for (unsigned long i = 0; i < from->card(); i++) d->insert(OFstatic_cast(DcmElement *, from->getElement(i)->clone()), OFTrue);
    return d;
}

DcmTagKey key(uint32_t tag) { return DcmTagKey(Uint16(tag >> 16), Uint16(tag & 0xFFFF)); }

int fail(char *err, size_t errlen, const std::string &message) {
    if (err && errlen > 0) {
        std::strncpy(err, message.c_str(), errlen - 1);
        err[errlen - 1] = 0;
    }
    return -1;
}

int fail(char *err, size_t errlen, const std::string &what, const OFCondition &c) {
    return fail(err, errlen, what + ": " + c.text());
}

std::string tagText(uint32_t tag) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "(%04X,%04X)", unsigned(tag >> 16), unsigned(tag & 0xFFFF));
    return buf;
}

std::string peerText(const dx_dcm_peer *p) {
    return std::string(p->called_ae ? p->called_ae : "") + "@" + (p->host ? p->host : "") + ":" + std::to_string(p->port);
}

// DcmSCU with the N-CREATE and N-SET it lacks (DCMTK 3.6.7), built on its own message
// sending and receiving.
class Association : public DcmSCU {
public:
    explicit Association(const dx_dcm_peer *p) {
        setAETitle(p->calling_ae ? p->calling_ae : "DEXA");
        setPeerHostName(p->host ? p->host : "");
        setPeerPort(p->port);
        setPeerAETitle(p->called_ae ? p->called_ae : "");
        setConnectionTimeout(p->connect_timeout > 0 ? p->connect_timeout : -1);
        if (p->acse_timeout > 0) setACSETimeout(p->acse_timeout);
        if (p->dimse_timeout > 0) {
            setDIMSEBlockingMode(DIMSE_NONBLOCKING);
            setDIMSETimeout(p->dimse_timeout);
        }
        setDatasetConversionMode(OFTrue);
    }

    ~Association() override {
        if (isConnected()) abortAssociation();
    }

    OFCondition open() {
        OFCondition c = initNetwork();
        if (c.bad()) return c;
        return negotiateAssociation();
    }

    OFCondition nCreate(T_ASC_PresentationContextID pc, const char *cls, const char *inst, DcmDataset *ds, Uint16 &status) {
        T_DIMSE_Message req;
        std::memset(&req, 0, sizeof req);
        req.CommandField = DIMSE_N_CREATE_RQ;
        T_DIMSE_N_CreateRQ &r = req.msg.NCreateRQ;
        r.MessageID = messageID++;
        OFStandard::strlcpy(r.AffectedSOPClassUID, cls, sizeof r.AffectedSOPClassUID);
        OFStandard::strlcpy(r.AffectedSOPInstanceUID, inst, sizeof r.AffectedSOPInstanceUID);
        r.DataSetType = DIMSE_DATASET_PRESENT;
        r.opts = O_NCREATE_AFFECTEDSOPINSTANCEUID;
        OFCondition c = sendDIMSEMessage(pc, &req, ds);
        if (c.bad()) return c;
        return response(DIMSE_N_CREATE_RSP, status);
    }

    // C-ECHO with the peer's status (DcmSCU::sendECHORequest in 3.6.7 drops it).
    OFCondition echo(T_ASC_PresentationContextID pc, Uint16 &status) {
        T_DIMSE_Message req;
        std::memset(&req, 0, sizeof req);
        req.CommandField = DIMSE_C_ECHO_RQ;
        req.msg.CEchoRQ.MessageID = messageID++;
        OFStandard::strlcpy(req.msg.CEchoRQ.AffectedSOPClassUID, UID_VerificationSOPClass, sizeof req.msg.CEchoRQ.AffectedSOPClassUID);
        req.msg.CEchoRQ.DataSetType = DIMSE_DATASET_NULL;
        OFCondition c = sendDIMSEMessage(pc, &req, NULL);
        if (c.bad()) return c;
        return response(DIMSE_C_ECHO_RSP, status);
    }

    OFCondition nSet(T_ASC_PresentationContextID pc, const char *cls, const char *inst, DcmDataset *ds, Uint16 &status) {
        T_DIMSE_Message req;
        std::memset(&req, 0, sizeof req);
        req.CommandField = DIMSE_N_SET_RQ;
        T_DIMSE_N_SetRQ &r = req.msg.NSetRQ;
        r.MessageID = messageID++;
        OFStandard::strlcpy(r.RequestedSOPClassUID, cls, sizeof r.RequestedSOPClassUID);
        OFStandard::strlcpy(r.RequestedSOPInstanceUID, inst, sizeof r.RequestedSOPInstanceUID);
        r.DataSetType = DIMSE_DATASET_PRESENT;
        OFCondition c = sendDIMSEMessage(pc, &req, ds);
        if (c.bad()) return c;
        return response(DIMSE_N_SET_RSP, status);
    }

private:
    Uint16 messageID = 1;

    OFCondition response(T_DIMSE_Command expected, Uint16 &status) {
        T_DIMSE_Message rsp;
        std::memset(&rsp, 0, sizeof rsp);
        T_ASC_PresentationContextID pc = 0;
        DcmDataset *detail = NULL;
        OFCondition c = receiveDIMSECommand(&pc, &rsp, &detail);
        delete detail;
        if (c.bad()) return c;
        if (rsp.CommandField != expected) return DIMSE_BADCOMMANDTYPE;
        T_DIMSE_DataSetType type;
        if (expected == DIMSE_C_ECHO_RSP) {
            status = rsp.msg.CEchoRSP.DimseStatus;
            type = rsp.msg.CEchoRSP.DataSetType;
        } else if (expected == DIMSE_N_CREATE_RSP) {
            status = rsp.msg.NCreateRSP.DimseStatus;
            type = rsp.msg.NCreateRSP.DataSetType;
        } else {
            status = rsp.msg.NSetRSP.DimseStatus;
            type = rsp.msg.NSetRSP.DataSetType;
        }
        if (type != DIMSE_DATASET_NULL) {
            DcmDataset *attributes = NULL;
            c = receiveDIMSEDataset(&pc, &attributes);
            delete attributes;
        }
        return c;
    }
};

const char *kTransferSyntaxes[] = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax};

OFList<OFString> transferSyntaxes() {
    OFList<OFString> ts;
    for (const char *t : kTransferSyntaxes) ts.push_back(t);
    return ts;
}

// One normalised request (N-CREATE, N-SET, N-ACTION) of `sopClass` on an association of its
// own: `send` makes it on the accepted context and fills the peer's status.
template <typename Send>
int normalisedRequest(const dx_dcm_peer *peer, const char *sopClass, const char *sopInstance, const dx_dcm_dataset *ds, const char *what,
                      uint16_t *status, char *err, size_t errlen, Send send) {
    if (!peer || !sopClass || !sopInstance || !ds || !status) return fail(err, errlen, "missing argument");
    Association a(peer);
    a.addPresentationContext(sopClass, transferSyntaxes());
    OFCondition c = a.open();
    if (c.bad()) return fail(err, errlen, "association with " + peerText(peer), c);
    T_ASC_PresentationContextID pc = a.findAnyPresentationContextID(sopClass, "");
    if (pc == 0) return fail(err, errlen, peerText(peer) + " does not accept " + sopClass);
    std::unique_ptr<DcmDataset> copy(datasetCopy(ds));
    Uint16 s = 0xFFFF;
    c = send(a, pc, copy.get(), s);
    *status = s;
    if (c.bad()) return fail(err, errlen, std::string(what) + " to " + peerText(peer), c);
    a.releaseAssociation();
    return 0;
}

int normalised(const dx_dcm_peer *peer, const char *sopClass, const char *sopInstance, const dx_dcm_dataset *ds, bool create,
               uint16_t *status, char *err, size_t errlen) {
    return normalisedRequest(peer, sopClass, sopInstance, ds, create ? "N-CREATE" : "N-SET", status, err, errlen,
                             [&](Association &a, T_ASC_PresentationContextID pc, DcmDataset *d, Uint16 &s) {
                                 return create ? a.nCreate(pc, sopClass, sopInstance, d, s) : a.nSet(pc, sopClass, sopInstance, d, s);
                             });
}

// An acceptor for N-EVENT-REPORTs (a storage commitment's result), one association at a
// time, each report handed to the caller's handler whose answer is the response's status.
class Listener : public DcmSCP {
public:
    Listener(dx_dcm_event_handler handler, void *context) : handler(handler), context(context) {}

    std::atomic<bool> stopping{false};
    void setContext(void *c) { context = c; }

protected:
    OFBool stopAfterConnectionTimeout() override { return stopping.load(); }
    OFBool stopAfterCurrentAssociation() override { return stopping.load(); }

    OFCondition handleIncomingCommand(T_DIMSE_Message *msg, const DcmPresentationContextInfo &info) override {
        if (msg->CommandField != DIMSE_N_EVENT_REPORT_RQ) return DcmSCP::handleIncomingCommand(msg, info);
        DcmDataset *ds = NULL;
        Uint16 eventType = 0;
        OFCondition c = handleEVENTREPORTRequest(msg->msg.NEventReportRQ, info.presentationContextID, ds, eventType);
        delete ds;
        return c;
    }

    Uint16 checkEVENTREPORTRequest(T_DIMSE_N_EventReportRQ &rq, DcmDataset *ds) override {
        OFString calling = getPeerAETitle();
        return handler(context, calling.c_str(), rq.AffectedSOPClassUID, rq.EventTypeID, ds ? handle(ds) : NULL);
    }

private:
    dx_dcm_event_handler handler;
    void *context;
};

}  // namespace

struct dx_dcm_listener {
    Listener scp;
    dx_dcm_listener(dx_dcm_event_handler h, void *c) : scp(h, c) {}
};

extern "C" {

int dx_dcm_init(char *err, size_t errlen) {
    OFLog::configure(OFLogger::ERROR_LOG_LEVEL);
    if (!dcmDataDict.isDictionaryLoaded()) return fail(err, errlen, "the DICOM data dictionary is not loaded (DCMDICTPATH, libdcmtk)");
    return 0;
}

dx_dcm_dataset *dx_dcm_new(void) { return handle(new DcmDataset()); }

void dx_dcm_free(dx_dcm_dataset *ds) { delete item(ds); }

int dx_dcm_put_string(dx_dcm_dataset *ds, uint32_t tag, const char *value, char *err, size_t errlen) {
    if (!ds || !value) return fail(err, errlen, "missing argument");
    OFCondition c = item(ds)->putAndInsertString(key(tag), value, OFTrue);
    return c.good() ? 0 : fail(err, errlen, tagText(tag), c);
}

int dx_dcm_put_empty(dx_dcm_dataset *ds, uint32_t tag, char *err, size_t errlen) {
    if (!ds) return fail(err, errlen, "missing argument");
    OFCondition c = item(ds)->insertEmptyElement(key(tag), OFTrue);
    return c.good() ? 0 : fail(err, errlen, tagText(tag), c);
}

int dx_dcm_put_bytes(dx_dcm_dataset *ds, uint32_t tag, const uint8_t *bytes, size_t count, int words, char *err, size_t errlen) {
    if (!ds || (!bytes && count > 0)) return fail(err, errlen, "missing argument");
    if (count > 0xFFFFFFF0u) return fail(err, errlen, tagText(tag) + ": too long");
    OFCondition c;
    if (words) {
        if (count % 2) return fail(err, errlen, tagText(tag) + ": odd length for OW");
        std::vector<Uint16> w(count / 2);
        for (size_t i = 0; i < w.size(); i++) w[i] = Uint16(bytes[2 * i] | (bytes[2 * i + 1] << 8));
        c = item(ds)->putAndInsertUint16Array(key(tag), w.data(), (unsigned long)w.size(), OFTrue);
    } else {
        c = item(ds)->putAndInsertUint8Array(key(tag), bytes, (unsigned long)count, OFTrue);
    }
    return c.good() ? 0 : fail(err, errlen, tagText(tag), c);
}

dx_dcm_dataset *dx_dcm_append_item(dx_dcm_dataset *ds, uint32_t tag, char *err, size_t errlen) {
    if (!ds) {
        fail(err, errlen, "missing argument");
        return NULL;
    }
    DcmItem *newItem = NULL;
    OFCondition c = item(ds)->findOrCreateSequenceItem(key(tag), newItem, -2);
    if (c.bad() || !newItem) {
        fail(err, errlen, tagText(tag), c);
        return NULL;
    }
    return handle(newItem);
}

int dx_dcm_get_string(const dx_dcm_dataset *ds, uint32_t tag, char *buf, size_t buflen, size_t *needed) {
    if (!ds) return -1;
    DcmElement *e = NULL;
    // findAndGetElement is not const in DCMTK; the search changes nothing.
    if (const_cast<DcmItem *>(item(ds))->findAndGetElement(key(tag), e, OFFalse).bad() || !e) return -1;
    DcmEVR vr = e->getVR();
    if (e->ident() == EVR_SQ || vr == EVR_OB || vr == EVR_OW || vr == EVR_UN || vr == EVR_ox || vr == EVR_px) return -1;
    OFString value;
    if (e->getOFStringArray(value).bad()) return -1;
    if (needed) *needed = value.length() + 1;
    if (buf && buflen > 0) {
        size_t n = value.length() < buflen - 1 ? value.length() : buflen - 1;
        std::memcpy(buf, value.c_str(), n);
        buf[n] = 0;
    }
    return 0;
}

size_t dx_dcm_item_count(const dx_dcm_dataset *ds, uint32_t tag) {
    if (!ds) return 0;
    DcmSequenceOfItems *sq = NULL;
    if (const_cast<DcmItem *>(item(ds))->findAndGetSequence(key(tag), sq).bad() || !sq) return 0;
    return sq->card();
}

dx_dcm_dataset *dx_dcm_item(const dx_dcm_dataset *ds, uint32_t tag, size_t index) {
    if (!ds) return NULL;
    DcmSequenceOfItems *sq = NULL;
    if (const_cast<DcmItem *>(item(ds))->findAndGetSequence(key(tag), sq).bad() || !sq || index >= sq->card()) return NULL;
    return handle(sq->getItem((unsigned long)index));
}

size_t dx_dcm_count(const dx_dcm_dataset *ds) { return ds ? item(ds)->card() : 0; }

int dx_dcm_at(const dx_dcm_dataset *ds, size_t index, uint32_t *tag, int *kind) {
    if (!ds || !tag || !kind || index >= item(ds)->card()) return -1;
    DcmElement *e = const_cast<DcmItem *>(item(ds))->getElement((unsigned long)index);
    if (!e) return -1;
    *tag = (uint32_t(e->getGTag()) << 16) | e->getETag();
    // getVR: the element's own VR (Pixel Data's ident() is DCMTK's internal EVR_PixelData).
    switch (e->ident() == EVR_SQ ? EVR_SQ : e->getVR()) {
    case EVR_SQ: *kind = 1; break;
    case EVR_OB: case EVR_OW: case EVR_OF: case EVR_OD: case EVR_OL: case EVR_OV: case EVR_UN: case EVR_ox: case EVR_px: case EVR_pixelSQ:
        *kind = 2;
        break;
    default: *kind = 0;
    }
    return 0;
}

int dx_dcm_get_bytes(const dx_dcm_dataset *ds, uint32_t tag, uint8_t **bytes, size_t *count, int *words) {
    if (!ds || !bytes || !count || !words) return -1;
    *bytes = NULL;
    *count = 0;
    DcmElement *e = NULL;
    if (const_cast<DcmItem *>(item(ds))->findAndGetElement(key(tag), e, OFFalse).bad() || !e) return -1;
    if (e->getVR() == EVR_OW) {
        Uint16 *w = NULL;
        if (e->getUint16Array(w).bad()) return -1;
        size_t n = e->getLength() / 2;
        uint8_t *out = static_cast<uint8_t *>(std::malloc(n * 2 + 1));
        if (!out) return -1;
        for (size_t i = 0; i < n; i++) { out[2 * i] = uint8_t(w[i] & 0xFF); out[2 * i + 1] = uint8_t(w[i] >> 8); }
        *bytes = out; *count = n * 2; *words = 1;
        return 0;
    }
    if (e->getVR() == EVR_OB || e->getVR() == EVR_UN) {
        Uint8 *b = NULL;
        if (e->getUint8Array(b).bad()) return -1;
        size_t n = e->getLength();
        uint8_t *out = static_cast<uint8_t *>(std::malloc(n + 1));
        if (!out) return -1;
        if (n > 0 && b) std::memcpy(out, b, n);
        *bytes = out; *count = n; *words = 0;
        return 0;
    }
    return -1;
}

int dx_dcm_save(const dx_dcm_dataset *ds, const char *path, char *err, size_t errlen) {
    if (!ds || !path) return fail(err, errlen, "missing argument");
    DcmFileFormat file(datasetCopy(ds), OFFalse);  // takes the copy
    OFCondition c = file.saveFile(path, EXS_LittleEndianExplicit, EET_ExplicitLength, EGL_recalcGL, EPD_withoutPadding);
    return c.good() ? 0 : fail(err, errlen, std::string("cannot write ") + path, c);
}

dx_dcm_dataset *dx_dcm_load(const char *path, char *err, size_t errlen) {
    if (!path) {
        fail(err, errlen, "missing argument");
        return NULL;
    }
    DcmFileFormat file;
    OFCondition c = file.loadFile(path);
    if (c.bad()) {
        fail(err, errlen, std::string("cannot read ") + path, c);
        return NULL;
    }
    return handle(new DcmDataset(*file.getDataset()));
}

int dx_dcm_dicomdir(const char *root, const char *const *files, size_t count, const char *fileset_id, char *err, size_t errlen) {
    if (!root || (!files && count > 0) || !fileset_id) return fail(err, errlen, "missing argument");
    DicomDirInterface dir;
    dir.disableBackupMode();
    const std::string path = std::string(root) + "/" + DEFAULT_DICOMDIR_NAME;
    OFCondition c = dir.createNewDicomDir(DicomDirInterface::AP_GeneralPurpose, OFFilename(path.c_str()), fileset_id);
    if (c.bad()) return fail(err, errlen, "cannot start " + path, c);
    for (size_t i = 0; i < count; i++) {
        if (!files[i]) return fail(err, errlen, "missing file name");
        c = dir.addDicomFile(OFFilename(files[i]), OFFilename(root));
        if (c.bad()) return fail(err, errlen, std::string("cannot add ") + files[i] + " to " + path, c);
    }
    c = dir.writeDicomDir();
    return c.good() ? 0 : fail(err, errlen, "cannot write " + path, c);
}

int dx_dcm_echo(const dx_dcm_peer *peer, char *err, size_t errlen) {
    if (!peer) return fail(err, errlen, "missing argument");
    Association a(peer);
    a.addPresentationContext(UID_VerificationSOPClass, transferSyntaxes());
    OFCondition c = a.open();
    if (c.bad()) return fail(err, errlen, "association with " + peerText(peer), c);
    T_ASC_PresentationContextID pc = a.findAnyPresentationContextID(UID_VerificationSOPClass, "");
    if (pc == 0) return fail(err, errlen, peerText(peer) + " does not accept Verification");
    Uint16 status = 0xFFFF;
    c = a.echo(pc, status);
    if (c.bad()) return fail(err, errlen, "C-ECHO to " + peerText(peer), c);
    a.releaseAssociation();
    if (status != STATUS_Success) {
        char buf[64];
        std::snprintf(buf, sizeof buf, " answered the C-ECHO with status 0x%04X", unsigned(status));
        return fail(err, errlen, peerText(peer) + buf);
    }
    return 0;
}

int dx_dcm_find_worklist(const dx_dcm_peer *peer, const dx_dcm_dataset *query, dx_dcm_dataset ***results, size_t *count,
                         uint16_t *status, size_t *refused, char *note, size_t notelen, char *err, size_t errlen) {
    if (!peer || !query || !results || !count || !status) return fail(err, errlen, "missing argument");
    *results = NULL;
    *count = 0;
    *status = 0xFFFF;
    Association a(peer);
    a.addPresentationContext(UID_FINDModalityWorklistInformationModel, transferSyntaxes());
    OFCondition c = a.open();
    if (c.bad()) return fail(err, errlen, "association with " + peerText(peer), c);
    T_ASC_PresentationContextID pc = a.findAnyPresentationContextID(UID_FINDModalityWorklistInformationModel, "");
    if (pc == 0) return fail(err, errlen, peerText(peer) + " does not offer the Modality Worklist");
    std::unique_ptr<DcmDataset> keys(datasetCopy(query));
    OFList<QRResponse *> responses;
    c = a.sendFINDRequest(pc, keys.get(), &responses);
    std::vector<DcmDataset *> matches;
    Uint16 last = 0xFFFF;
    size_t unreadable = 0;
    std::string firstReason;
    for (QRResponse *r : responses) {
        last = r->m_status;
        if (r->m_dataset && DICOM_PENDING_STATUS(r->m_status)) {
            // Every answer's text as UTF-8, from the character set it names (PS3.5 §6.1): a
            // Latin-1 "Müller" stays Müller. One that cannot be converted is left out.
            OFCondition cc = r->m_dataset->convertToUTF8();
            if (cc.good()) {
                matches.push_back(r->m_dataset);
                r->m_dataset = NULL;  // now ours
            } else {
                unreadable++;
                if (firstReason.empty()) firstReason = cc.text();
            }
        }
        delete r;
    }
    if (refused) *refused = unreadable;
    if (unreadable > 0 && note && notelen > 0) {
        std::string text = "an answer's character set could not be read: " + firstReason;
        std::strncpy(note, text.c_str(), notelen - 1);
        note[notelen - 1] = 0;
    }
    *status = last;
    auto drop = [&matches]() { for (DcmDataset *m : matches) delete m; };
    if (c.bad()) {
        drop();
        return fail(err, errlen, "C-FIND to " + peerText(peer), c);
    }
    if (last != STATUS_Success) {
        drop();
        char buf[64];
        std::snprintf(buf, sizeof buf, " answered the C-FIND with status 0x%04X", unsigned(last));
        return fail(err, errlen, peerText(peer) + buf);
    }
    a.releaseAssociation();
    if (!matches.empty()) {
        dx_dcm_dataset **list = static_cast<dx_dcm_dataset **>(std::calloc(matches.size(), sizeof(dx_dcm_dataset *)));
        if (!list) {
            drop();
            return fail(err, errlen, "out of memory");
        }
        for (size_t i = 0; i < matches.size(); i++) list[i] = handle(matches[i]);
        *results = list;
        *count = matches.size();
    }
    return 0;
}

void dx_dcm_free_list(dx_dcm_dataset **list, size_t count) {
    if (!list) return;
    for (size_t i = 0; i < count; i++) delete item(list[i]);
    std::free(list);
}

int dx_dcm_store(const dx_dcm_peer *peer, const char *const *paths, size_t count, uint16_t *statuses, char *err, size_t errlen) {
    if (!peer || (!paths && count > 0) || (!statuses && count > 0)) return fail(err, errlen, "missing argument");
    for (size_t i = 0; i < count; i++) statuses[i] = 0xFFFF;
    if (count == 0) return 0;
    // Read every file first: its SOP class gives the presentation contexts to propose. A file
    // that cannot be read is answered 0xFFFE here and the rest are sent.
    std::vector<DcmFileFormat> files(count);
    std::vector<bool> readable(count, false);
    std::set<std::string> classes;
    for (size_t i = 0; i < count; i++) {
        OFString cls;
        if (files[i].loadFile(paths[i]).bad() || files[i].getDataset()->findAndGetOFString(DCM_SOPClassUID, cls).bad() || cls.empty()) {
            statuses[i] = DX_DCM_UNREADABLE;
            continue;
        }
        readable[i] = true;
        classes.insert(cls.c_str());
    }
    if (classes.empty()) return 0;
    Association a(peer);
    for (const std::string &cls : classes) a.addPresentationContext(cls.c_str(), transferSyntaxes());
    OFCondition c = a.open();
    if (c.bad()) return fail(err, errlen, "association with " + peerText(peer), c);
    for (size_t i = 0; i < count; i++) {
        if (!readable[i]) continue;
        OFString cls;
        files[i].getDataset()->findAndGetOFString(DCM_SOPClassUID, cls);
        T_ASC_PresentationContextID pc = a.findAnyPresentationContextID(cls, "");
        if (pc == 0) {
            statuses[i] = 0xFFFF;
            return fail(err, errlen, peerText(peer) + " does not accept " + cls.c_str());
        }
        Uint16 s = 0xFFFF;
        c = a.sendSTORERequest(pc, "", files[i].getDataset(), s);
        if (c.bad()) return fail(err, errlen, std::string("C-STORE of ") + paths[i] + " to " + peerText(peer), c);
        statuses[i] = s;
    }
    a.releaseAssociation();
    return 0;
}

int dx_dcm_ncreate(const dx_dcm_peer *peer, const char *sop_class, const char *sop_instance, const dx_dcm_dataset *ds, uint16_t *status,
                   char *err, size_t errlen) {
    return normalised(peer, sop_class, sop_instance, ds, true, status, err, errlen);
}

int dx_dcm_nset(const dx_dcm_peer *peer, const char *sop_class, const char *sop_instance, const dx_dcm_dataset *ds, uint16_t *status,
                char *err, size_t errlen) {
    return normalised(peer, sop_class, sop_instance, ds, false, status, err, errlen);
}

int dx_dcm_naction(const dx_dcm_peer *peer, const char *sop_class, const char *sop_instance, uint16_t action_type, const dx_dcm_dataset *ds,
                   uint16_t *status, char *err, size_t errlen) {
    return normalisedRequest(peer, sop_class, sop_instance, ds, "N-ACTION", status, err, errlen,
                             [&](Association &a, T_ASC_PresentationContextID pc, DcmDataset *d, Uint16 &s) {
                                 return a.sendACTIONRequest(pc, sop_instance, action_type, d, s);
                             });
}

dx_dcm_listener *dx_dcm_listener_new(const char *ae_title, uint16_t port, const char *sop_class, dx_dcm_event_handler handler, void *context,
                                     char *err, size_t errlen) {
    if (!ae_title || !sop_class || !handler) {
        fail(err, errlen, "missing argument");
        return NULL;
    }
    dx_dcm_listener *l = new dx_dcm_listener(handler, context);
    l->scp.setAETitle(ae_title);
    l->scp.setPort(port);
    // Polled every second, so that a stop is seen without a connection.
    l->scp.setConnectionBlockingMode(DUL_NOBLOCK);
    l->scp.setConnectionTimeout(1);
    l->scp.setHostLookupEnabled(OFFalse);
    OFCondition c = l->scp.setEnableVerification();
    // A storage commitment SCP reporting on an association of its own proposes the SCP role
    // (PS3.4 J.3.3.1.3); some propose no role (Orthanc). Either is accepted (one profile
    // holds an abstract syntax once: SCU/SCP lets the requestor take either role).
    if (c.good()) c = l->scp.addPresentationContext(sop_class, transferSyntaxes(), ASC_SC_ROLE_SCUSCP, "DEFAULT");
    if (c.bad()) {
        fail(err, errlen, "listener", c);
        delete l;
        return NULL;
    }
    return l;
}

void dx_dcm_listener_set_context(dx_dcm_listener *l, void *context) {
    if (l) l->scp.setContext(context);
}

int dx_dcm_listener_run(dx_dcm_listener *l, char *err, size_t errlen) {
    if (!l) return fail(err, errlen, "missing argument");
    OFCondition c = l->scp.listen();
    if (c.bad() && !l->scp.stopping.load()) return fail(err, errlen, "listening on port " + std::to_string(l->scp.getPort()), c);
    return 0;
}

void dx_dcm_listener_stop(dx_dcm_listener *l) {
    if (l) l->scp.stopping.store(true);
}

void dx_dcm_listener_free(dx_dcm_listener *l) { delete l; }

}  // extern "C"
