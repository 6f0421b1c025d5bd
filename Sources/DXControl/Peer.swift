#if canImport(Glibc)
import Glibc
#endif

/// Who is on the other end of a control connection, from the kernel (`SO_PEERCRED`).
public struct PeerCredentials: Sendable, Equatable, Codable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) { self.pid = pid; self.uid = uid; self.gid = gid }
}

/// What a caller may do on the control socket.
public enum Role: String, Sendable, Codable, Comparable {
    /// Members of `dexa`: exams, positioning, status, events, abort.
    case technologist
    /// Root and members of `dexa-service`: everything, including raw scans and service methods.
    case service

    public static func < (a: Role, b: Role) -> Bool { a == .technologist && b == .service }
}

/// The server's decision on a new connection, made before anything is read from it.
public enum Admission: Sendable {
    case admit(Role)
    case refuse(String)
}
