import DXControl
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Who may use the control socket, from the caller's kernel credentials: root and members of
/// the service group may call everything; members of the technologist group may run exams
/// and read status; anyone else is refused before the request is read.
public struct AccessPolicy: Sendable {
    public var technologistGroup: String
    public var serviceGroup: String
    /// The daemon's own user (a test or a developer running it by hand) is trusted as service.
    public var ownUID: UInt32 = getuid()

    public init(technologistGroup: String = "dexa", serviceGroup: String = "dexa-service") {
        self.technologistGroup = technologistGroup
        self.serviceGroup = serviceGroup
    }

    public func admission(for peer: PeerCredentials?) -> Admission {
        guard let peer else { return .refuse("permission denied: the caller's credentials cannot be read") }
        if peer.uid == 0 || peer.uid == ownUID { return .admit(.service) }
        let groups = Self.groupNames(uid: peer.uid, primaryGID: peer.gid)
        if groups.contains(serviceGroup) { return .admit(.service) }
        if groups.contains(technologistGroup) { return .admit(.technologist) }
        return .refuse("permission denied: uid \(peer.uid) is in neither \(technologistGroup) nor \(serviceGroup)")
    }

    /// The names of every group `uid` belongs to (primary and supplementary).
    static func groupNames(uid: UInt32, primaryGID: UInt32) -> Set<String> {
        var names = Set<String>()
        if let g = groupName(primaryGID) { names.insert(g) }
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        guard getpwuid_r(uid, &pwd, &buffer, buffer.count, &result) == 0, result != nil, let name = pwd.pw_name else { return names }
        var count: Int32 = 256
        var gids = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(name, pwd.pw_gid, &gids, &count) < 0 {
            gids = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(name, pwd.pw_gid, &gids, &count)
        }
        for gid in gids.prefix(Int(max(0, count))) { if let g = groupName(gid) { names.insert(g) } }
        return names
    }

    static func groupName(_ gid: UInt32) -> String? {
        var grp = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        guard getgrgid_r(gid, &grp, &buffer, buffer.count, &result) == 0, result != nil, let n = grp.gr_name else { return nil }
        return String(cString: n)
    }

    static func groupID(_ name: String) -> UInt32? {
        var grp = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        guard getgrnam_r(name, &grp, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return grp.gr_gid
    }
}

/// The audit trail: one JSON object per line, appended and flushed as it happens, for every
/// call that can cause an exposure and every refusal.
public final class AuditLog: Sendable {
    public let path: String
    private let handle: Mutex<FileHandle?>
    private let logger: Logger

    public init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
        let url = URL(fileURLWithPath: path)
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        // Appended by the kernel (O_APPEND): every line lands at the end whatever else wrote
        // to the file since it was opened (a second daemon started by mistake, a rotation that
        // truncates); a handle positioned once at the end would write over those lines. Not
        // inherited by the programs the daemon starts (O_CLOEXEC).
        var fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        if fd >= 0 {
            _ = fchmod(fd, 0o640)  // a new log is 0640 whatever the umask
        } else if errno == EEXIST {
            fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        }
        if fd < 0 {
            logger.error("cannot open the audit log; audit entries go to the daemon log",
                         metadata: ["path": "\(path)", "error": "\(String(cString: strerror(errno)))"])
        }
        handle = Mutex(fd >= 0 ? FileHandle(fileDescriptor: fd, closeOnDealloc: true) : nil)
    }

    /// The audit log's descriptor (-1: none), for tests of how it is opened.
    var descriptor: Int32 { handle.withLock { $0?.fileDescriptor ?? -1 } }

    /// One line of the audit log (docs/console.md).
    struct Entry: Encodable {
        var time: String
        var method: String
        var decision: String
        var uid: UInt32?
        var gid: UInt32?
        var pid: Int32?
        var role: Role?
        var detail: String?
        var params: JSONValue?
    }

    public func record(peer: PeerCredentials?, role: Role?, method: String, decision: String, detail: String? = nil, params: JSONValue? = nil) {
        let entry = Entry(time: Date().formatted(.iso8601), method: method, decision: decision, uid: peer?.uid, gid: peer?.gid,
                          pid: peer?.pid, role: role, detail: detail, params: params)
        let line = RPCLine.encode((try? JSONValue(encoding: entry)) ?? .object(["method": .string(method), "decision": .string(decision)]))
        let written = handle.withLock { h -> Bool in
            guard let h else { return false }
            do { try h.write(contentsOf: line); return true } catch { return false }
        }
        if !written { logger.notice("audit", metadata: ["entry": "\(String(decoding: line.dropLast(), as: UTF8.self))"]) }
    }
}
