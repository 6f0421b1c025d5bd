import Foundation

/// The station's DICOM settings: its AE title, its UID root, the peers it talks to. The file
/// (default `/etc/dexa/dicom.conf`) holds `key = value` lines as dexad.conf does; `#` starts a
/// comment. A peer is `AE_TITLE@host:port`. Keys: docs/dicom-conformance.md ("Configuration").
public struct DicomConfiguration: Sendable, Equatable {
    public static let defaultPath = "/etc/dexa/dicom.conf"

    public var aeTitle = "DEXA"
    public var stationName: String
    public var institutionName: String?
    public var uidRoot: String?
    public var worklist: DicomPeer?
    /// The modality the worklist is asked for (BMD); nil asks for any.
    public var worklistModality: String? = "BMD"
    public var mpps: DicomPeer?
    public var storage: DicomPeer?
    public var commitment: DicomPeer?
    /// The port dexa-dicomd accepts associations on (as `ae_title`): the storage commitment
    /// peer's results (N-EVENT-REPORT). nil: commitment is not asked for.
    public var listenPort: UInt16?
    /// What makes this station's UIDs its own: `/etc/machine-id` (unique per installation),
    /// else the station name. Not a setting.
    public var stationIdentity: String

    public init(stationName: String = Self.hostName, stationIdentity: String = Self.machineIdentity) {
        self.stationName = stationName
        self.stationIdentity = stationIdentity
    }

    public static var hostName: String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count) == 0 else { return "DX-1" }
        let name = DCMTK.text(buf)
        return name.isEmpty ? "DX-1" : String(name.prefix(16))
    }

    public static var machineIdentity: String {
        let id = (try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        return id.isEmpty ? hostName : id
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case unreadable(String, String)
        case line(Int, String)

        public var description: String {
            switch self {
            case let .unreadable(path, why): "cannot read DICOM config \(path): \(why)"
            case let .line(n, why): "DICOM config line \(n): \(why)"
            }
        }
    }

    /// Reads the file at `path`; a missing file is the defaults (no peers) when `optional`.
    public static func load(path: String, optional: Bool = false) throws(Failure) -> DicomConfiguration {
        guard FileManager.default.fileExists(atPath: path) else {
            if optional { return DicomConfiguration() }
            throw .unreadable(path, "no such file")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw .unreadable(path, "not readable") }
        guard let text = String(data: data, encoding: .utf8) else { throw .unreadable(path, "not UTF-8 text") }
        return try parse(text)
    }

    /// The settings `text` gives over the defaults. Every key known, every value checked: a
    /// misspelt key or a bad value is an error naming its line, never ignored.
    public static func parse(_ text: String, base: DicomConfiguration = DicomConfiguration()) throws(Failure) -> DicomConfiguration {
        var c = base
        var timeouts: (connect: Int?, association: Int?, message: Int?) = (nil, nil, nil)
        var peers: [(Int, String, String)] = []
        var seen = Set<String>()
        for (k, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let n = k + 1
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? ""
            if line.isEmpty { continue }
            guard let eq = line.firstIndex(of: "=") else { throw .line(n, "expected key = value") }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces), value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            guard seen.insert(key).inserted else { throw .line(n, "'\(key)' given twice") }
            func seconds() throws(Failure) -> Int {
                guard let s = Int(value), (1...600).contains(s) else { throw .line(n, "\(key) must be whole seconds from 1 to 600") }
                return s
            }
            switch key {
            case "ae_title":
                if let p = AETitle.problem(value) { throw .line(n, p) }
                c.aeTitle = value
            case "station_name":
                guard !value.isEmpty, value.count <= 16 else { throw .line(n, "station_name must have 1 to 16 characters") }
                c.stationName = value
            case "institution":
                guard !value.isEmpty, value.count <= 64 else { throw .line(n, "institution must have 1 to 64 characters") }
                c.institutionName = value
            case "uid_root":
                if let p = UIDGenerator.problem(root: value) { throw .line(n, p) }
                c.uidRoot = value
            case "worklist_modality":
                guard value == "any" || (1...16).contains(value.count) && value.allSatisfy({ $0.isASCII && ($0.isUppercase || $0.isNumber) }) else {
                    throw .line(n, "worklist_modality must be a modality (BMD) or 'any'")
                }
                c.worklistModality = value == "any" ? nil : value
            case "worklist", "mpps", "storage", "commitment":
                peers.append((n, key, value))
            case "listen_port":
                guard let port = UInt16(value), port > 0 else { throw .line(n, "listen_port must be a TCP port, 1 to 65535") }
                c.listenPort = port
            case "connect_timeout_s": timeouts.connect = try seconds()
            case "association_timeout_s": timeouts.association = try seconds()
            case "message_timeout_s": timeouts.message = try seconds()
            default:
                throw .line(n, "unknown key '\(key)' (ae_title, station_name, institution, uid_root, worklist, worklist_modality, mpps, storage, commitment, listen_port, connect_timeout_s, association_timeout_s, message_timeout_s)")
            }
        }
        for (n, key, value) in peers {
            guard var peer = Self.peer(value) else { throw .line(n, "\(key) must be AE_TITLE@host:port, e.g. PACS@pacs.example:104") }
            if let s = timeouts.connect { peer.connectTimeout = s }
            if let s = timeouts.association { peer.associationTimeout = s }
            if let s = timeouts.message { peer.messageTimeout = s }
            if let p = peer.problem { throw .line(n, p) }
            switch key {
            case "worklist": c.worklist = peer
            case "mpps": c.mpps = peer
            case "storage": c.storage = peer
            default: c.commitment = peer
            }
        }
        if let n = peers.first(where: { $0.1 == "commitment" })?.0, c.listenPort == nil {
            throw .line(n, "commitment needs listen_port: the port the storage commitment peer sends its results to")
        }
        return c
    }

    /// `AE@host:port` (an IPv6 host in brackets: `AE@[::1]:104`).
    static func peer(_ s: String) -> DicomPeer? {
        guard let at = s.lastIndex(of: "@") else { return nil }
        let ae = String(s[..<at]), address = s[s.index(after: at)...]
        guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]), port > 0 else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !ae.isEmpty, host.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { return nil }
        return DicomPeer(host: host, port: port, aeTitle: ae)
    }

    /// The UID generator for this station.
    public var uids: UIDGenerator { UIDGenerator(root: uidRoot, station: stationIdentity) }
}
