@testable import DXDaemon
import DXTestSupport
import Foundation
import Logging
import Testing

@Suite("Audit log")
struct AuditLogTests {
    /// Two writers on one file (a second daemon started by mistake, a rotation): every line of
    /// both is kept, in the order written. A handle positioned once at the end when it opened
    /// wrote over the other's lines.
    @Test func linesAreAppendedWhateverElseWrote() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("audit/audit.log")
        let first = AuditLog(path: path, logger: Logger(label: "test"))
        let second = AuditLog(path: path, logger: Logger(label: "test"))
        first.record(peer: nil, role: nil, method: "scan.run", decision: "allowed")
        second.record(peer: nil, role: nil, method: "exam.abort", decision: "allowed")
        first.record(peer: nil, role: nil, method: "exam.next", decision: "refused")
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 3, "\(lines)")
        #expect(lines.map { $0.contains("scan.run") } == [true, false, false])
        #expect(lines.map { $0.contains("exam.abort") } == [false, true, false])
        #expect(lines.map { $0.contains("exam.next") } == [false, false, true])
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o640)
    }

    /// The programs the daemon starts do not inherit the audit log.
    @Test func theDescriptorIsClosedOnExec() throws {
        let dir = TemporaryDirectory()
        let log = AuditLog(path: dir.file("audit.log"), logger: Logger(label: "test"))
        let fd = log.descriptor
        #expect(fd >= 0)
        #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC != 0)
    }

    /// A path that cannot be opened leaves no descriptor and sends entries to the daemon's log.
    @Test func anUnwritablePathIsSaid() {
        let log = AuditLog(path: "/proc/version/audit.log", logger: Logger(label: "test"))
        #expect(log.descriptor == -1)
        log.record(peer: nil, role: nil, method: "scan.run", decision: "allowed")
    }
}
