import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A small disk of its own for a test (a tmpfs mounted over a folder; root only, as on the
/// developers' machines and CI): something to fill while the daemon writes captures and its
/// database on it. Unmounted by `unmount()` or when the value goes.
public final class ScratchDisk: Sendable {
    public let path: String
    private let mounted = Mutex(false)
    private var filler: String { path + "/.filler" }

    /// Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN). Under CI a test
    /// that needs one runs anyway and fails if it cannot (docs/RELIABILITY.md).
    public static let available: Bool = {
        guard geteuid() == 0 else { return false }
        let probe = TemporaryDirectory("dxt-mount")
        guard mount("tmpfs", probe.path, "tmpfs", 0, "size=1m") == 0 else { return false }
        umount2(probe.path, Int32(MNT_DETACH))
        return true
    }()

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Mounts a tmpfs of `megabytes` at `path` (made if missing).
    /// Refuses a folder that holds anything: a tmpfs over it would hide it, and unmounting
    /// twice could take the wrong file system away.
    public init(at path: String, megabytes: Int) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        guard (try? FileManager.default.contentsOfDirectory(atPath: path))?.isEmpty == true else {
            throw Failure(description: "\(path) is not an empty folder: no scratch disk over it")
        }
        guard mount("tmpfs", path, "tmpfs", 0, "size=\(megabytes)m,mode=0755") == 0 else {
            throw Failure(description: "cannot mount a tmpfs at \(path): \(String(cString: strerror(errno))) (tests with a scratch disk run as root)")
        }
        self.path = path
        mounted.withLock { $0 = true }
    }

    public var freeBytes: Int64 {
        var fs = statvfs()
        guard statvfs(path, &fs) == 0 else { return 0 }
        return Int64(fs.f_bavail) * Int64(fs.f_frsize)
    }

    /// Writes a filler file until only `leaving` bytes are free (0: until the disk is full).
    public func fill(leaving: Int64 = 0) throws {
        let fd = open(filler, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(description: "cannot create \(filler): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let block = [UInt8](repeating: 0xA5, count: 1 << 16)
        while freeBytes > leaving {
            let want = Int(min(Int64(block.count), freeBytes - leaving))
            let n = block.withUnsafeBytes { write(fd, $0.baseAddress, want) }
            if n <= 0 { break }
        }
    }

    /// Removes the filler: the disk has its room back.
    public func release() { unlink(filler) }

    /// Unmounts it (once; later calls do nothing).
    public func unmount() {
        mounted.withLock { m in
            if m { umount2(path, Int32(MNT_DETACH)) }
            m = false
        }
    }

    deinit { unmount() }
}
