import CDCMTK
import Foundation
import Synchronization

/// Storage Commitment Push Model (PS3.4 J): the request that asks the PACS to take
/// responsibility for instances it was sent (N-ACTION), and its answer, which comes later in
/// an N-EVENT-REPORT on an association the PACS opens (`CommitmentListener`).
public enum StorageCommitment {
    /// The SOP class's well-known instance, and the action "Request Storage Commitment".
    public static let instance = "1.2.840.10008.1.20.1.1"
    public static let requestAction: UInt16 = 1
    static let transactionUID = DicomTag(0x0008, 0x1195)
    static let failedSOPSequence = DicomTag(0x0008, 0x1198)
    static let failureReason = DicomTag(0x0008, 0x1197)

    /// An instance the request names.
    public struct Reference: Sendable, Equatable {
        public var sopClassUID: String
        public var sopInstanceUID: String
        public init(sopClassUID: String, sopInstanceUID: String) { self.sopClassUID = sopClassUID; self.sopInstanceUID = sopInstanceUID }
    }

    /// The N-ACTION's dataset: the transaction and each instance once (J.3.2.1.1).
    public static func request(transactionUID uid: String, _ references: [Reference]) -> DicomDataset {
        var ds = DicomDataset()
        ds.set(transactionUID, uid)
        ds.set(.referencedSOPSequence, items: references.map { r in
            var item = DicomDataset()
            item.set(.referencedSOPClassUID, r.sopClassUID)
            item.set(.referencedSOPInstanceUID, r.sopInstanceUID)
            return item
        })
        return ds
    }

    /// The failure reasons of PS3.3 C.14.1.1, in words.
    public static func words(reason: UInt16) -> String {
        let code = String(format: "0x%04X", reason)
        switch reason {
        case 0x0110: return "\(code): processing failure"
        case 0x0112: return "\(code): no such object instance"
        case 0x0213: return "\(code): resource limitation"
        case 0x0122: return "\(code): SOP class not supported"
        case 0x0119: return "\(code): class/instance conflict"
        case 0x0131: return "\(code): duplicate transaction UID"
        default: return "\(code)"
        }
    }
}

/// What a storage commitment SCP reported for one transaction (J.3.3.1.2): the instances it
/// committed and those it could not, with the reason.
public struct CommitmentReport: Sendable, Equatable {
    public struct Failure: Sendable, Equatable {
        public var sopInstanceUID: String
        public var reason: UInt16
    }

    public var callingAETitle: String
    public var transactionUID: String
    public var committed: [String]
    public var failed: [Failure]

    /// The report in `dataset` (event type 1: all committed; 2: failures exist), or why it
    /// cannot be read.
    public init(callingAETitle: String, eventType: UInt16, dataset: DicomDataset) throws(DicomFailure) {
        guard eventType == 1 || eventType == 2 else { throw DicomFailure("event type \(eventType) is not a storage commitment result") }
        guard let uid = dataset.text(StorageCommitment.transactionUID), !uid.isEmpty else { throw DicomFailure("the report has no Transaction UID") }
        self.callingAETitle = callingAETitle
        transactionUID = uid
        committed = dataset.items(.referencedSOPSequence).compactMap { $0.text(.referencedSOPInstanceUID) }
        failed = try dataset.items(StorageCommitment.failedSOPSequence).map { item throws(DicomFailure) in
            guard let instance = item.text(.referencedSOPInstanceUID) else { throw DicomFailure("a failed instance without its UID") }
            return Failure(sopInstanceUID: instance, reason: item.text(StorageCommitment.failureReason).flatMap { UInt16($0) } ?? 0x0110)
        }
        if eventType == 2 && failed.isEmpty { throw DicomFailure("event type 2 (failures exist) names no failed instance") }
    }
}

extension DicomAssociation {
    /// N-ACTION "Request Storage Commitment" of `references` under `transactionUID`: the peer's
    /// status (success means received, not committed: the result comes in a report).
    public func requestCommitment(transactionUID: String, _ references: [StorageCommitment.Reference]) throws(DicomFailure) -> UInt16 {
        let ds = try DCMTK.encode(StorageCommitment.request(transactionUID: transactionUID, references))
        defer { dx_dcm_free(ds) }
        return try withPeer { p throws(DicomFailure) in
            var status: UInt16 = 0xFFFF
            try DCMTK.checked { err, len in
                dx_dcm_naction(p, SOPClass.storageCommitmentPushModel, StorageCommitment.instance, StorageCommitment.requestAction, ds, &status, err, len)
            }
            return status
        }
    }
}

/// dexa-dicomd's acceptor for storage commitment results: DCMTK listens on `port` as this
/// station's AE title on a thread of its own; each N-EVENT-REPORT is read into a
/// `CommitmentReport`, kept until `drain`, and answered success (or 0110 when it cannot be
/// read, so that the PACS knows it was not taken).
public final class CommitmentListener: Sendable {
    public let port: UInt16
    private let reports = Mutex<[CommitmentReport]>([])
    private let problems = Mutex<[String]>([])
    /// DCMTK's listener. Safe to share: it is made in init and freed in deinit, after `stop`
    /// has ended the thread that runs it; between them it is touched only by that thread
    /// (dx_dcm_listener_run) and by dx_dcm_listener_stop, which sets an atomic flag.
    nonisolated(unsafe) private let handle: OpaquePointer
    private let finished = DispatchSemaphore(value: 0)
    private let running = Mutex(false)
    private let stoppedBy = Mutex<String?>(nil)

    public init(aeTitle: String, port: UInt16) throws(DicomFailure) {
        self.port = port
        var made: OpaquePointer?
        var err = [CChar](repeating: 0, count: 512)
        // The context is set once the listener exists (self is not yet complete): see start.
        made = dx_dcm_listener_new(aeTitle, port, SOPClass.storageCommitmentPushModel, onEventReport, nil, &err, err.count)
        guard let made else { throw DicomFailure(DCMTK.text(err)) }
        handle = made
    }

    deinit {
        stop()
        dx_dcm_listener_free(handle)
    }

    /// Listens until `stop`; ending without it (the port taken) is kept as `failure`.
    public func start() {
        guard running.withLock({ r in defer { r = true }; return !r }) else { return }
        dx_dcm_listener_set_context(handle, Unmanaged.passUnretained(self).toOpaque())
        let thread = Thread { [self] in
            var err = [CChar](repeating: 0, count: 512)
            let failed = dx_dcm_listener_run(handle, &err, err.count) != 0
            // Ended without stop(): the port could not be taken, or listening failed.
            if running.withLock({ $0 }) { stoppedBy.withLock { $0 = failed ? DCMTK.text(err) : "the listener ended" } }
            finished.signal()
        }
        thread.name = "dicom-listener"
        thread.start()
    }

    /// Stops listening; returns when the listener's thread has ended (about a second).
    public func stop() {
        guard running.withLock({ r in defer { r = false }; return r }) else { return }
        dx_dcm_listener_stop(handle)
        finished.wait()
    }

    /// Why the listener stopped listening without being stopped (its port taken, the
    /// network gone): nil while it listens or after `stop`.
    public var failure: String? { stoppedBy.withLock { $0 } }

    /// The reports received since the last drain, oldest first.
    public func drain() -> [CommitmentReport] { reports.withLock { r in defer { r = [] }; return r } }

    /// Reports that could not be read, and listening errors, since the last drain.
    public func drainProblems() -> [String] { problems.withLock { p in defer { p = [] }; return p } }

    fileprivate func received(callingAE: String, sopClass: String, eventType: UInt16, dataset: DicomDataset) -> UInt16 {
        guard sopClass == SOPClass.storageCommitmentPushModel else {
            problems.withLock { $0.append("\(callingAE) sent an N-EVENT-REPORT of \(sopClass), not storage commitment") }
            return 0x0110
        }
        do {
            let report = try CommitmentReport(callingAETitle: callingAE, eventType: eventType, dataset: dataset)
            reports.withLock { $0.append(report) }
            return 0x0000
        } catch {
            problems.withLock { $0.append("\(callingAE): a storage commitment report that cannot be read: \(error)") }
            return 0x0110
        }
    }
}

/// The C handler DCMTK calls on the listener's thread.
private let onEventReport: dx_dcm_event_handler = { context, calling, sopClass, eventType, ds in
    guard let context else { return 0x0110 }
    let listener = Unmanaged<CommitmentListener>.fromOpaque(context).takeUnretainedValue()
    return listener.received(callingAE: calling.map { String(cString: $0) } ?? "", sopClass: sopClass.map { String(cString: $0) } ?? "",
                             eventType: eventType, dataset: ds.map { DCMTK.decode($0) } ?? DicomDataset())
}
