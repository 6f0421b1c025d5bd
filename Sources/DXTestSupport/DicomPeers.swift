import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The DICOM peers and validators the tests run against, none of them ours: Orthanc (a
/// PACS), DCMTK's wlmscpfs (a worklist) and dump2dcm, dicom3tools' dciodvfy, DCMTK's dsrdump.
/// Installed by scripts/setup. Under CI a test that needs one runs and fails when it is missing.
public enum DicomTools {
    public static let orthanc = "/usr/sbin/Orthanc"
    public static let wlmscpfs = "/usr/bin/wlmscpfs"
    public static let dump2dcm = "/usr/bin/dump2dcm"
    public static let dciodvfy = "/usr/bin/dciodvfy"
    public static let dsrdump = "/usr/bin/dsrdump"
    public static let dcmdump = "/usr/bin/dcmdump"

    public static var available: Bool {
        ProcessInfo.processInfo.environment["CI"] == "true"
            || [orthanc, wlmscpfs, dump2dcm, dciodvfy, dsrdump].allSatisfy { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A TCP port on loopback that was free a moment ago (the kernel's choice for port 0).
    /// Whether something accepts TCP connections on 127.0.0.1:`port`.
    public static func isListening(port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        return withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    public static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw PeerFailure("socket: \(errno)") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard bound else { throw PeerFailure("bind: \(errno)") }
        return UInt16(bigEndian: addr.sin_port)
    }

    /// Runs a tool to its end: its exit status and what it printed (both streams).
    public static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// dciodvfy's findings for a file: its "Error" lines and its "Warning" lines.
    public static func verify(_ path: String) throws -> (errors: [String], warnings: [String]) {
        let (_, output) = try run(dciodvfy, [path])
        let lines = output.split(separator: "\n").map(String.init)
        return (lines.filter { $0.hasPrefix("Error") }, lines.filter { $0.hasPrefix("Warning") })
    }
}

public struct PeerFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// DCMTK's worklist server (wlmscpfs) on a loopback port, serving the items given as DCMTK
/// dump text (turned into worklist files by dump2dcm) to the AE title `aeTitle`.
public final class WorklistServer: Sendable {
    public let port: UInt16
    public let aeTitle: String
    let directory: TemporaryDirectory
    let process: ChildProcess

    public init(aeTitle: String = "WORKLIST", items: [String]) async throws {
        directory = TemporaryDirectory("dxwl")
        let folder = directory.file(aeTitle)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: folder + "/lockfile", contents: Data()) else { throw CocoaError(.fileWriteUnknown) }
        for (k, dump) in items.enumerated() {
            let dumpPath = directory.file("item\(k + 1).dump")
            // An item that names Latin-1 is written in Latin-1, as such a RIS stores it.
            try dump.write(toFile: dumpPath, atomically: true, encoding: dump.contains("[ISO_IR 100]") ? .isoLatin1 : .utf8)
            let (status, output) = try DicomTools.run(DicomTools.dump2dcm, [dumpPath, "\(folder)/item\(k + 1).wl"])
            guard status == 0 else { throw PeerFailure("dump2dcm item \(k + 1): \(output)") }
        }
        port = try DicomTools.freePort()
        self.aeTitle = aeTitle
        // -csk: each answer names the character set its file gives, as a RIS does (wlmscpfs's
        // default names none, and bytes without a character set are refused).
        process = try ChildProcess(executable: DicomTools.wlmscpfs, arguments: ["-csk", "-dfp", directory.path, String(port)],
                                   logPath: directory.file("wlmscpfs.log"))
        try await waitForListening(port: port, process: process)
    }

    public var log: String { process.log }

    public func stop() { process.stop() }

    /// Four of today's scheduled procedures for DEXA1 (three in UTF-8, one in Latin-1, ISO_IR
    /// 100, as older RIS send them), and one for another station.
    public static func exampleItems(date: String) -> [String] {
        func item(_ acc: String, _ name: String, _ id: String, _ sex: String, _ birth: String, _ uid: String, _ time: String, station: String = "DEXA1",
                  charset: String = "ISO_IR 192") -> String {
            """
            (0008,0005) CS [\(charset)]
            (0008,0050) SH [\(acc)]
            (0008,0090) PN [Referrer^Rita]
            (0010,0010) PN [\(name)]
            (0010,0020) LO [\(id)]
            (0010,0030) DA [\(birth)]
            (0010,0040) CS [\(sex)]
            (0020,000d) UI [\(uid)]
            (0032,1060) LO [DXA lumbar spine and both hips, VFA]
            (0040,0100) SQ
            (fffe,e000) -
            (0008,0060) CS [BMD]
            (0040,0001) AE [\(station)]
            (0040,0002) DA [\(date)]
            (0040,0003) TM [\(time)]
            (0040,0007) LO [DXA]
            (0040,0009) SH [SPS-\(acc)]
            (fffe,e00d) -
            (fffe,e0dd) -
            (0040,1001) SH [RP-\(acc)]
            """
        }
        return [
            item("ACC-1", "Example^Ada", "P-0042", "F", "19560314", "1.2.826.0.1.3680043.10.9.1", "0830"),
            item("ACC-2", "Müller^Zoë", "P-0043", "F", "19480101", "1.2.826.0.1.3680043.10.9.2", "0915"),
            item("ACC-3", "Okafor^Chidi", "P-0044", "M", "19610707", "1.2.826.0.1.3680043.10.9.3", "1000"),
            item("ACC-4", "Other^Station", "P-0045", "M", "19700101", "1.2.826.0.1.3680043.10.9.4", "1030", station: "CT1"),
            item("ACC-5", "Ødegård^Søren", "P-0046", "M", "19550505", "1.2.826.0.1.3680043.10.9.5", "1100", charset: "ISO_IR 100"),
        ]
    }
}

/// Orthanc (a PACS) on loopback ports with its own storage in a temporary folder: DICOM on
/// `dicomPort` as `aeTitle`, its REST API on `httpPort`.
public final class OrthancServer: Sendable {
    public let dicomPort: UInt16
    public let httpPort: UInt16
    public let aeTitle: String
    let directory: TemporaryDirectory
    let process: ChildProcess

    /// `dicomPort` nil: a free one. `modality`: a station Orthanc knows (AE title and the
    /// port it listens on, loopback), where it sends storage commitment results.
    public init(aeTitle: String = "ORTHANC", dicomPort: UInt16? = nil, modality: (aeTitle: String, port: UInt16)? = nil) async throws {
        directory = TemporaryDirectory("dxorthanc")
        self.dicomPort = try dicomPort ?? DicomTools.freePort()
        httpPort = try DicomTools.freePort()
        self.aeTitle = aeTitle
        let dicomPort = self.dicomPort
        let config: [String: Any] = [
            "Name": "dexa-test", "StorageDirectory": directory.file("storage"), "IndexDirectory": directory.file("index"),
            "HttpPort": Int(httpPort), "DicomPort": Int(dicomPort), "DicomAet": aeTitle, "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false, "HttpServerEnabled": true, "DicomServerEnabled": true, "Plugins": [String](),
            "DicomCheckCalledAet": true, "StableAge": 1,
            "DicomModalities": modality.map { ["station": [$0.aeTitle, "127.0.0.1", Int($0.port)]] } ?? [String: Any](),
        ]
        let configPath = directory.file("orthanc.json")
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
        process = try ChildProcess(executable: DicomTools.orthanc, arguments: [configPath], logPath: directory.file("orthanc.log"))
        try await waitForListening(port: dicomPort, process: process)
        try await waitForListening(port: httpPort, process: process)
    }

    /// GET of the REST API's `path` (`/instances`), its JSON.
    public func get(_ path: String) async throws -> Any {
        guard let url = URL(string: "http://127.0.0.1:\(httpPort)\(path)") else { throw PeerFailure("bad path \(path)") }
        let (data, response) = try await URLSession.shared.data(from: url)
        guard (response as? HTTPURLResponse)?.statusCode == 200 else { throw PeerFailure("GET \(path): \(response)") }
        return try JSONSerialization.jsonObject(with: data)
    }

    /// DELETE of the REST API's `path` (`/instances/ID`): what a PACS that lost an object looks like.
    public func delete(_ path: String) async throws {
        guard let url = URL(string: "http://127.0.0.1:\(httpPort)\(path)") else { throw PeerFailure("bad path \(path)") }
        var request = URLRequest(url: url)
        request.httpMethod = "DELETE"
        let (_, response) = try await URLSession.shared.data(for: request)
        guard (response as? HTTPURLResponse)?.statusCode == 200 else { throw PeerFailure("DELETE \(path): \(response)") }
    }

    /// The main DICOM tags of every instance Orthanc holds (`/instances?expand`), and of the
    /// study and patient each belongs to.
    public func instances() async throws -> [[String: Any]] {
        (try await get("/instances?expand") as? [[String: Any]]) ?? []
    }

    /// How many instances Orthanc stored as new (its change log's NewInstance events): a
    /// copy of an instance it holds is not one.
    public func newInstances() async throws -> Int {
        let changes = try await get("/changes?limit=10000") as? [String: Any]
        return (changes?["Changes"] as? [[String: Any]] ?? []).filter { $0["ChangeType"] as? String == "NewInstance" }.count
    }

    /// An instance's tags in full (`/instances/ID/simplified-tags`).
    public func tags(ofInstance id: String) async throws -> [String: Any] {
        (try await get("/instances/\(id)/simplified-tags") as? [String: Any]) ?? [:]
    }

    public var log: String { process.log }

    public func stop() { process.stop() }
}

/// Waits up to 20 s for a TCP listener on loopback `port`, failing early if `process` ends.
func waitForListening(port: UInt16, process: ChildProcess) async throws {
    let deadline = Date().addingTimeInterval(20)
    while Date() < deadline {
        guard process.isRunning else { throw PeerFailure("\(process.process.executableURL?.lastPathComponent ?? "peer") ended: \(process.log.suffix(2000))") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        let connected = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        close(fd)
        if connected { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw PeerFailure("nothing listens on port \(port) after 20 s: \(process.log.suffix(2000))")
}

/// A TCP listener on loopback that takes a DICOM association's connection and misbehaves:
/// closes it at once, answers with bytes that are no PDU, or says nothing at all. Each
/// connection is served on a thread of its own until `stop`.
public final class MisbehavingPeer: Sendable {
    public enum Behaviour: String, Sendable, CaseIterable, CustomStringConvertible {
        case closeAtOnce, garbage, silent
        public var description: String { rawValue }
    }

    public let port: UInt16
    let listener: Int32

    public init(_ behaviour: Behaviour) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw PeerFailure("socket: \(errno)") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 4) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { close(fd); throw PeerFailure("bind: \(errno)") }
        port = UInt16(bigEndian: addr.sin_port)
        listener = fd
        let t = Thread {
            while true {
                let c = accept(fd, nil, nil)
                guard c >= 0 else { return }  // the listener was shut down
                switch behaviour {
                case .closeAtOnce:
                    close(c)
                case .garbage:
                    // An A-ASSOCIATE-AC's type byte with a length that runs past what follows,
                    // then text.
                    var reply: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0xFF, 0xFF] + Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8)
                    _ = reply.withUnsafeMutableBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    usleep(200_000)
                    close(c)
                case .silent:
                    // Holds the connection open and reads nothing until the caller gives up.
                    var buffer = [UInt8](repeating: 0, count: 4096)
                    while buffer.withUnsafeMutableBytes({ recv(c, $0.baseAddress, $0.count, 0) }) > 0 {}
                    close(c)
                }
            }
        }
        t.name = "dexa-test-misbehaving-peer"
        t.start()
    }

    public func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }
}

/// A test peer the project's own scripts install is not installed.
public struct PeerMissing: Error, CustomStringConvertible {
    public let description: String
}

/// A RIS as far as MPPS goes: pynetdicom's SCP (Tests/Peers/mpps-scp.py, run by the Python
/// of the project's own environment that scripts/setup makes in `.build-peers/venv`) on a
/// loopback port. It writes each N-CREATE, N-SET and the step as it stands into `directory`.
public final class MPPSServer: Sendable {
    static var root: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }
    public static var python: String { root + "/.build-peers/venv/bin/python3" }
    public static var script: String { root + "/Tests/Peers/mpps-scp.py" }
    /// Under CI the peer must be there (a test that needs it fails rather than skips).
    public static var available: Bool {
        ProcessInfo.processInfo.environment["CI"] == "true" || FileManager.default.isExecutableFile(atPath: python)
    }

    public let port: UInt16
    public let aeTitle: String
    public let directory: TemporaryDirectory
    let process: ChildProcess

    /// `port` nil: a free one.
    public init(aeTitle: String = "MPPSSCP", port: UInt16? = nil) async throws {
        // Said plainly: a clone the project's setup has not run in lacks it (found running the
        // suite in a fresh clone: "The file doesn't exist" with the path and nothing more).
        guard FileManager.default.isExecutableFile(atPath: Self.python) else {
            throw PeerMissing(description: "the MPPS peer's Python environment \(Self.python) is missing: run scripts/setup")
        }
        directory = TemporaryDirectory("dxmpps")
        self.port = try port ?? DicomTools.freePort()
        self.aeTitle = aeTitle
        process = try ChildProcess(executable: Self.python, arguments: [Self.script, directory.file("steps"), String(self.port), aeTitle],
                                   logPath: directory.file("mpps-scp.log"))
        try await waitForListening(port: self.port, process: process)
    }

    /// What the SCP answered, one line per message: "N-CREATE UID 0x0000".
    public var messages: [String] {
        process.log.split(separator: "\n").map(String.init).filter { $0.hasPrefix("N-CREATE ") || $0.hasPrefix("N-SET ") }
    }

    /// The file of step `uid`'s `what` (ncreate, nset1, merged), when it exists.
    public func file(_ uid: String, _ what: String) -> String? {
        let path = directory.file("steps/\(uid).\(what).dcm")
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }

    public var log: String { process.log }

    public func stop() { process.stop() }
}

/// A storage commitment SCP that reports as PS3.4 J.3.3.1.3 describes: on an association of
/// its own proposing the SCP role for itself (pynetdicom, Tests/Peers/commitment-scp.py).
/// Orthanc, the other peer of the tests, proposes no role.
public final class CommitmentServer: Sendable {
    public let port: UInt16
    public let aeTitle: String
    let directory: TemporaryDirectory
    let process: ChildProcess

    /// Reports to `station` (its AE title and listening port on loopback).
    public init(aeTitle: String = "COMMITSCP", station: (aeTitle: String, port: UInt16)) async throws {
        directory = TemporaryDirectory("dxcommit")
        port = try DicomTools.freePort()
        self.aeTitle = aeTitle
        process = try ChildProcess(executable: MPPSServer.python,
                                   arguments: [MPPSServer.root + "/Tests/Peers/commitment-scp.py", String(port), aeTitle, station.aeTitle, String(station.port)],
                                   logPath: directory.file("commitment-scp.log"))
        try await waitForListening(port: port, process: process)
    }

    /// What it did, one line per message: "N-ACTION UID", "N-EVENT-REPORT UID 0x0000".
    public var messages: [String] {
        process.log.split(separator: "\n").map(String.init).filter { $0.hasPrefix("N-ACTION ") || $0.hasPrefix("N-EVENT-REPORT ") }
    }

    public var log: String { process.log }

    public func stop() { process.stop() }
}
