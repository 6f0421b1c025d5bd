// A small C interface to DCMTK (dcmdata, dcmnet), the field's reference implementation of
// DICOM, for DXDicom. DCMTK encodes and decodes the datasets and speaks the upper-layer
// protocol; Swift decides what the datasets say. Every function that can fail returns 0 on
// success and -1 on failure with a message in `err` (always terminated, cut at `errlen`).
//
// Ownership: a dataset from dx_dcm_new, dx_dcm_load or a query's results is owned by the
// caller and freed once with dx_dcm_free (results with dx_dcm_free_list). An item from
// dx_dcm_append_item or dx_dcm_item belongs to its parent and lives as long as it.
//
// Tags are (group << 16) | element. Functions are safe to call from any one thread at a
// time per dataset. Associations share one thing: DCMTK keeps the TCP connect timeout
// process-wide (dcmConnectionTimeout in 3.6.7), so the last association's value holds for
// all; dexa and dexa-dicomd open one association at a time.
#ifndef CDCMTK_H
#define CDCMTK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dx_dcm_dataset dx_dcm_dataset;

/// Quiets DCMTK's own logging to errors only (the caller reports what failed) and checks
/// that the data dictionary is loaded; returns 0, or -1 when it is not.
int dx_dcm_init(char *err, size_t errlen);

// MARK: Datasets

dx_dcm_dataset *dx_dcm_new(void);
void dx_dcm_free(dx_dcm_dataset *ds);

/// Puts `value` (its VR from the data dictionary; numbers as their decimal text, values of a
/// multi-valued attribute separated by backslashes) replacing any earlier value.
int dx_dcm_put_string(dx_dcm_dataset *ds, uint32_t tag, const char *value, char *err, size_t errlen);

/// Puts an attribute with no value (type 2), of its dictionary VR; a sequence with no item.
int dx_dcm_put_empty(dx_dcm_dataset *ds, uint32_t tag, char *err, size_t errlen);

/// Puts Pixel Data or another binary attribute: `words` 0 as OB (bytes), 1 as OW (16-bit
/// little-endian words, `count` bytes, even).
int dx_dcm_put_bytes(dx_dcm_dataset *ds, uint32_t tag, const uint8_t *bytes, size_t count, int words, char *err, size_t errlen);

/// Appends an item to the sequence `tag` (made when absent); the item belongs to `ds`.
dx_dcm_dataset *dx_dcm_append_item(dx_dcm_dataset *ds, uint32_t tag, char *err, size_t errlen);

/// The attribute's value as text (multiple values backslash-separated) in `buf`: 0 when
/// present (possibly empty), -1 when absent or not text; `*needed` the length it needs.
int dx_dcm_get_string(const dx_dcm_dataset *ds, uint32_t tag, char *buf, size_t buflen, size_t *needed);

/// The number of items of sequence `tag` (0 when absent), and the item at `index` (NULL
/// when absent); the item belongs to `ds`.
size_t dx_dcm_item_count(const dx_dcm_dataset *ds, uint32_t tag);
dx_dcm_dataset *dx_dcm_item(const dx_dcm_dataset *ds, uint32_t tag, size_t index);

/// The number of attributes of `ds`, and the tag and kind of the one at `index` (in tag
/// order): kind 0 text (any VR read as text), 1 sequence, 2 binary (OB, OW, UN and the like).
size_t dx_dcm_count(const dx_dcm_dataset *ds);
int dx_dcm_at(const dx_dcm_dataset *ds, size_t index, uint32_t *tag, int *kind);

/// A binary attribute's bytes (OW as little-endian words), copied into `*bytes` (free()
/// them); -1 when absent or not binary.
int dx_dcm_get_bytes(const dx_dcm_dataset *ds, uint32_t tag, uint8_t **bytes, size_t *count, int *words);

/// Writes a DICOM Part 10 file (explicit VR little endian; the meta header from the
/// dataset's SOP Class and SOP Instance UIDs).
int dx_dcm_save(const dx_dcm_dataset *ds, const char *path, char *err, size_t errlen);

/// Reads a DICOM Part 10 file; its dataset, owned by the caller.
dx_dcm_dataset *dx_dcm_load(const char *path, char *err, size_t errlen);

/// Writes `root`/DICOMDIR (a new one, in place of any there) for the files `files`, given
/// relative to `root` as PS3.10 file IDs (components of up to 8 of A-Z 0-9 _ joined by '/'),
/// with DCMTK's DicomDirInterface and the General Purpose CD-R profile (STD-GEN-CD): every
/// file checked against it, patient, study and series records made from the files.
int dx_dcm_dicomdir(const char *root, const char *const *files, size_t count, const char *fileset_id, char *err, size_t errlen);

// MARK: Associations

/// A peer and how long to wait for it (seconds; 0 is DCMTK's default for ACSE and DIMSE,
/// and a blocking connect for the connection).
typedef struct {
    const char *host;
    uint16_t port;
    const char *called_ae;
    const char *calling_ae;
    int32_t connect_timeout;
    uint32_t acse_timeout;
    uint32_t dimse_timeout;
} dx_dcm_peer;

/// C-ECHO (Verification): a failure unless the peer answers status 0000.
int dx_dcm_echo(const dx_dcm_peer *peer, char *err, size_t errlen);

/// C-FIND of the Modality Worklist Information Model: the matches (their datasets, owned by
/// the caller: dx_dcm_free_list) in `*results`, every text converted to UTF-8 from the
/// character set each names (Specific Character Set then says ISO_IR 192). An answer that
/// cannot be converted is left out: `*refused` counts them, `note` says why. A C-FIND that
/// ends in a failure status is a failure; `*status` the final status either way.
int dx_dcm_find_worklist(const dx_dcm_peer *peer, const dx_dcm_dataset *query, dx_dcm_dataset ***results, size_t *count,
                         uint16_t *status, size_t *refused, char *note, size_t notelen, char *err, size_t errlen);
void dx_dcm_free_list(dx_dcm_dataset **list, size_t count);

/// A C-STORE status of our own: the file could not be read (not sent).
#define DX_DCM_UNREADABLE 0xFFFE

/// C-STORE of `count` Part 10 files on one association, a presentation context per SOP
/// class among them. `statuses[i]` the peer's status for file i; DX_DCM_UNREADABLE for a
/// file that could not be read (the others are sent); 0xFFFF when it was not sent because
/// the association failed first. Returns -1 when the association could not be set up or
/// failed before every readable file was answered.
int dx_dcm_store(const dx_dcm_peer *peer, const char *const *paths, size_t count, uint16_t *statuses, char *err, size_t errlen);

/// N-CREATE and N-SET of one instance of `sop_class` (Modality Performed Procedure Step),
/// `*status` the peer's status.
int dx_dcm_ncreate(const dx_dcm_peer *peer, const char *sop_class, const char *sop_instance, const dx_dcm_dataset *ds,
                   uint16_t *status, char *err, size_t errlen);
int dx_dcm_nset(const dx_dcm_peer *peer, const char *sop_class, const char *sop_instance, const dx_dcm_dataset *ds,
                uint16_t *status, char *err, size_t errlen);

/// N-ACTION of `action_type` on `sop_instance` of `sop_class` (Storage Commitment Push Model:
/// the well-known instance, action 1), `*status` the peer's status.
int dx_dcm_naction(const dx_dcm_peer *peer, const char *sop_class, const char *sop_instance, uint16_t action_type, const dx_dcm_dataset *ds,
                   uint16_t *status, char *err, size_t errlen);

// MARK: Listening

/// Called on the listener's thread for each N-EVENT-REPORT: the calling AE title, the
/// event's SOP class and type, and its dataset (NULL when none; valid during the call).
/// Returns the status to answer (0 success; 0110 when it could not be taken).
typedef uint16_t (*dx_dcm_event_handler)(void *context, const char *calling_ae, const char *sop_class, uint16_t event_type,
                                         const dx_dcm_dataset *ds);

typedef struct dx_dcm_listener dx_dcm_listener;

/// An acceptor on TCP `port` (all addresses) as `ae_title`, taking associations for
/// `sop_class` (in either role: a storage commitment SCP proposes the SCP role, or none) and
/// Verification, one at a time, and passing each N-EVENT-REPORT to `handler`.
dx_dcm_listener *dx_dcm_listener_new(const char *ae_title, uint16_t port, const char *sop_class, dx_dcm_event_handler handler, void *context,
                                     char *err, size_t errlen);
/// The context the handler is called with (set before run).
void dx_dcm_listener_set_context(dx_dcm_listener *listener, void *context);
/// Listens until dx_dcm_listener_stop (from any thread; returns within about a second).
int dx_dcm_listener_run(dx_dcm_listener *listener, char *err, size_t errlen);
void dx_dcm_listener_stop(dx_dcm_listener *listener);
void dx_dcm_listener_free(dx_dcm_listener *listener);

#ifdef __cplusplus
}
#endif

#endif
