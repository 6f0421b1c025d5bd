import Foundation
import Logging
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The systemd notification protocol (sd_notify): datagrams of `KEY=value` lines to the
/// socket named by `NOTIFY_SOCKET`. Without systemd (no variable) every call does nothing.
public struct SystemdNotifier: Sendable {
    public let socketPath: String?

    public init(socketPath: String?) { self.socketPath = socketPath }

    public static func fromEnvironment() -> SystemdNotifier {
        SystemdNotifier(socketPath: ProcessInfo.processInfo.environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 })
    }

    public var isActive: Bool { socketPath != nil }

    /// Sends one notification; failures are ignored (systemd may be gone while we stop).
    public func notify(_ state: String) {
        guard let path = socketPath else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract namespace
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { return }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in raw.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        let message = Array(state.utf8)
        _ = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
    }
}

/// Socket activation (sd_listen_fds): the listening control socket systemd passed as fd 3.
public enum SocketActivation {
    /// The first inherited descriptor, when `LISTEN_PID` is this process and `LISTEN_FDS` ≥ 1.
    /// The variables are removed so that children do not inherit them.
    public static func inheritedListener() -> Int32? {
        let env = ProcessInfo.processInfo.environment
        defer {
            unsetenv("LISTEN_PID"); unsetenv("LISTEN_FDS"); unsetenv("LISTEN_FDNAMES")
        }
        guard let pid = env["LISTEN_PID"].flatMap({ Int32($0) }), pid == getpid(),
              let count = env["LISTEN_FDS"].flatMap({ Int($0) }), count >= 1 else { return nil }
        let fd: Int32 = 3
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }
}

/// Keeps systemd informed: READY=1 once the daemon can serve, STATUS= as the device comes
/// and goes, WATCHDOG=1 only while the device session and the scan runner answer (a wedged
/// actor stops the pings and systemd restarts the daemon), STOPPING=1 when shutdown begins.
/// Listed last among the daemon's services, so it is the first to hear of shutdown.
final class SystemdService: Service {
    let notifier: SystemdNotifier
    let device: DeviceService
    let logger: Logger
    /// Half the watchdog period systemd asked for, or nil when it asked for none.
    let pingInterval: Duration?

    init(notifier: SystemdNotifier, device: DeviceService, logger: Logger) {
        self.notifier = notifier
        self.device = device
        self.logger = logger
        let env = ProcessInfo.processInfo.environment
        let forUs = env["WATCHDOG_PID"].flatMap { Int32($0) }.map { $0 == getpid() } ?? true
        if forUs, let usec = env["WATCHDOG_USEC"].flatMap({ Int64($0) }), usec > 0 {
            pingInterval = .microseconds(usec / 2)
        } else {
            pingInterval = nil
        }
    }

    func run() async throws {
        await withGracefulShutdownHandler {
            await self.watchdogLoop()
        } onGracefulShutdown: {
            self.notifier.notify("STOPPING=1\nSTATUS=Stopping: X-rays off, closing the device link")
        }
    }

    private func watchdogLoop() async {
        guard let interval = pingInterval, notifier.isActive else {
            try? await gracefulShutdown()
            return
        }
        let probeDone = ProbeFlag()
        var stalled = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            // One probe at a time: if the last never came back, the actor is wedged.
            if probeDone.value {
                probeDone.set(false)
                let device = self.device
                Task {
                    await device.session.liveness()
                    await device.runner.liveness()
                    probeDone.set(true)
                }
            }
            do { try await Task.sleep(for: interval / 2) } catch { return }
            if probeDone.value {
                notifier.notify("WATCHDOG=1")
                if stalled { logger.notice("device session answers again; watchdog pings resumed") }
                stalled = false
            } else if !stalled {
                stalled = true
                logger.critical("device session or scan runner not answering; withholding the systemd watchdog ping")
            }
            do { try await Task.sleep(for: interval / 2) } catch { return }
        }
    }
}

/// Whether the last liveness probe came back.
final class ProbeFlag: Sendable {
    private let state = Mutex(true)
    var value: Bool { state.withLock { $0 } }
    func set(_ v: Bool) { state.withLock { $0 = v } }
}
