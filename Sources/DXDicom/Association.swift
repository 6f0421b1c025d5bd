import CDCMTK
import Foundation

/// A DICOM peer the DX-1 talks to (a worklist, an MPPS, a storage or a commitment SCP) and
/// how long to wait for it.
public struct DicomPeer: Sendable, Codable, Equatable {
    public var host: String
    public var port: UInt16
    /// The peer's AE title (the called AE).
    public var aeTitle: String
    /// Seconds to wait for the TCP connection, the association's set-up and release, and
    /// each DIMSE message.
    public var connectTimeout: Int
    public var associationTimeout: Int
    public var messageTimeout: Int

    public enum CodingKeys: String, CodingKey {
        case host, port
        case aeTitle = "ae_title"
        case connectTimeout = "connect_timeout_s", associationTimeout = "association_timeout_s", messageTimeout = "message_timeout_s"
    }

    public init(host: String, port: UInt16, aeTitle: String, connectTimeout: Int = 5, associationTimeout: Int = 10, messageTimeout: Int = 30) {
        self.host = host
        self.port = port
        self.aeTitle = aeTitle
        self.connectTimeout = connectTimeout
        self.associationTimeout = associationTimeout
        self.messageTimeout = messageTimeout
    }

    /// What is wrong with the peer's settings, or nil: an AE title is 1-16 characters of the
    /// default repertoire without backslash, not only spaces (PS3.5 §6.2, AE).
    public var problem: String? {
        if let e = AETitle.problem(aeTitle) { return "peer \(host):\(port): \(e)" }
        if host.isEmpty { return "a peer without a host" }
        if port == 0 { return "peer \(host): port 0" }
        if connectTimeout < 1 || associationTimeout < 1 || messageTimeout < 1 { return "peer \(aeTitle): timeouts must be at least 1 s" }
        return nil
    }

    public var description: String { "\(aeTitle)@\(host):\(port)" }
}

/// Application Entity titles (PS3.5 §6.2, VR AE).
public enum AETitle {
    public static func problem(_ title: String) -> String? {
        if title.isEmpty || title.count > 16 { return "AE title \"\(title)\" must have 1 to 16 characters" }
        if title.allSatisfy({ $0 == " " }) { return "AE title of spaces only" }
        if title.contains("\\") || !title.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F }) {
            return "AE title \"\(title)\" must be printable ASCII without a backslash"
        }
        return nil
    }
}

/// Associations with a peer, each call one association: set up, the exchange, released.
/// Every call blocks its thread for as long as the peer takes (within the peer's timeouts):
/// call them off the cooperative pool. Two calls share nothing and may run at once.
public struct DicomAssociation: Sendable {
    public var peer: DicomPeer
    /// This station's AE title (the calling AE).
    public var callingAETitle: String

    public init(peer: DicomPeer, callingAETitle: String) {
        self.peer = peer
        self.callingAETitle = callingAETitle
    }

    func withPeer<T>(_ body: (UnsafePointer<dx_dcm_peer>) throws(DicomFailure) -> T) throws(DicomFailure) -> T {
        try DCMTK.ready.get()
        if let problem = peer.problem { throw DicomFailure(problem) }
        if let problem = AETitle.problem(callingAETitle) { throw DicomFailure("this station's \(problem)") }
        let host = strdup(peer.host), called = strdup(peer.aeTitle), calling = strdup(callingAETitle)
        defer { free(host); free(called); free(calling) }
        var p = dx_dcm_peer(host: host, port: peer.port, called_ae: called, calling_ae: calling,
                            connect_timeout: Int32(peer.connectTimeout), acse_timeout: UInt32(peer.associationTimeout),
                            dimse_timeout: UInt32(peer.messageTimeout))
        return try withUnsafePointer(to: &p) { (pointer) throws(DicomFailure) -> T in try body(pointer) }
    }

    /// C-ECHO: the peer answers.
    public func echo() throws(DicomFailure) {
        try withPeer { p throws(DicomFailure) in try DCMTK.checked { dx_dcm_echo(p, $0, $1) } }
    }

    /// What a worklist query found: the matching items' datasets (their text in UTF-8,
    /// whatever character set the worklist used), and the answers left out because their
    /// character set could not be read, with why.
    public struct WorklistAnswers: Sendable {
        public var datasets: [DicomDataset]
        public var leftOut: Int
        public var note: String?
    }

    /// C-FIND on the Modality Worklist.
    public func findWorklist(_ query: DicomDataset) throws(DicomFailure) -> WorklistAnswers {
        let keys = try DCMTK.encode(query)
        defer { dx_dcm_free(keys) }
        return try withPeer { p throws(DicomFailure) in
            var list: UnsafeMutablePointer<OpaquePointer?>?
            var count = 0, refused = 0
            var status: UInt16 = 0
            var note = [CChar](repeating: 0, count: 512)
            try DCMTK.checked { dx_dcm_find_worklist(p, keys, &list, &count, &status, &refused, &note, note.count, $0, $1) }
            defer { dx_dcm_free_list(list, count) }
            let datasets = list.map { l in (0..<count).compactMap { l[$0].map(DCMTK.decode) } } ?? []
            return WorklistAnswers(datasets: datasets, leftOut: refused, note: refused > 0 ? DCMTK.text(note) : nil)
        }
    }

    /// C-STORE of the Part 10 files at `paths` on one association: the peer's status for each
    /// (nil for a file not sent because the association failed first; `DimseStatus.unreadable`
    /// for a file that could not be read, the others sent) and the failure, if the association
    /// failed.
    public func store(_ paths: [String]) -> (statuses: [UInt16?], failure: DicomFailure?) {
        var statuses = [UInt16](repeating: 0xFFFF, count: paths.count)
        let failure: DicomFailure?
        do {
            try withPeer { p throws(DicomFailure) in
                let cPaths = paths.map { strdup($0) }
                defer { cPaths.forEach { free($0) } }
                let pointers: [UnsafePointer<CChar>?] = cPaths.map { $0.map { UnsafePointer($0) } }
                try DCMTK.checked { err, len in
                    pointers.withUnsafeBufferPointer { pp in
                        statuses.withUnsafeMutableBufferPointer { sp in dx_dcm_store(p, pp.baseAddress, paths.count, sp.baseAddress, err, len) }
                    }
                }
            }
            failure = nil
        } catch {
            failure = error
        }
        return (statuses.map { $0 == 0xFFFF ? nil : $0 }, failure)
    }

    /// N-CREATE of an instance of `sopClass` with `attributes`: the peer's status.
    public func create(sopClass: String, instance: String, attributes: DicomDataset) throws(DicomFailure) -> UInt16 {
        try normalised(create: true, sopClass: sopClass, instance: instance, attributes: attributes)
    }

    /// N-SET of the instance's `attributes`: the peer's status.
    public func set(sopClass: String, instance: String, attributes: DicomDataset) throws(DicomFailure) -> UInt16 {
        try normalised(create: false, sopClass: sopClass, instance: instance, attributes: attributes)
    }

    private func normalised(create: Bool, sopClass: String, instance: String, attributes: DicomDataset) throws(DicomFailure) -> UInt16 {
        let ds = try DCMTK.encode(attributes)
        defer { dx_dcm_free(ds) }
        return try withPeer { p throws(DicomFailure) in
            var status: UInt16 = 0xFFFF
            try DCMTK.checked { err, len in
                create ? dx_dcm_ncreate(p, sopClass, instance, ds, &status, err, len) : dx_dcm_nset(p, sopClass, instance, ds, &status, err, len)
            }
            return status
        }
    }
}

/// Blocking work (an association, a file written and fsynced) on a thread of its own, so that
/// it never holds one of the cooperative pool's threads (two on a 2-core console).
public enum Blocking {
    public static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { c in
            let t = Thread { c.resume(returning: body()) }
            t.name = "dexa-dicom"
            t.start()
        }
    }

    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            let t = Thread { c.resume(with: Result { try body() }) }
            t.name = "dexa-dicom"
            t.start()
        }
    }
}

/// DIMSE statuses (PS3.7 Annex C): success, warnings (0001, Bxxx), failures.
public enum DimseStatus {
    /// Ours, not the peer's: the file could not be read, so it was not sent (cdcmtk.h).
    public static let unreadable: UInt16 = 0xFFFE
    /// Failures that sending the same object again cannot mend (PS3.4 B.2.3, PS3.7 C): the
    /// dataset does not match the SOP class (A9xx), cannot be understood (Cxxx), the SOP
    /// class is not supported (0122), refused as not authorised (0124), or the file is gone.
    public static func isPermanent(_ s: UInt16) -> Bool {
        (0xA900...0xA9FF).contains(s) || (0xC000...0xCFFF).contains(s) || s == 0x0122 || s == 0x0124 || s == unreadable
    }
    public static func isSuccess(_ s: UInt16) -> Bool { s == 0x0000 }
    public static func isWarning(_ s: UInt16) -> Bool { s == 0x0001 || (s & 0xF000) == 0xB000 || s == 0x0107 || s == 0x0116 }
    public static func words(_ s: UInt16) -> String {
        let hex = String(s, radix: 16, uppercase: true)
        let code = "0x" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        switch s {
        case 0x0000: return "success"
        case 0xA700...0xA7FF: return "\(code): out of resources"
        case 0xA900...0xA9FF: return "\(code): dataset does not match SOP class"
        case 0xC000...0xCFFF: return "\(code): cannot understand"
        case 0x0122: return "\(code): SOP class not supported"
        case 0x0110: return "\(code): processing failure"
        case 0x0124: return "\(code): not authorised"
        case unreadable: return "the object's file cannot be read"
        default: return isWarning(s) ? "\(code): warning" : "\(code): failure"
        }
    }
}
