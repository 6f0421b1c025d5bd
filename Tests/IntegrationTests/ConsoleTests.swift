import DXControl
import DXTestSupport
import DXTransport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// How dexad behaves as a systemd service on a console: notifications, socket activation,
/// roles from peer credentials, the audit trail and the service report.
@Suite("dexad on the console", .serialized)
struct ConsoleTests {
    @Test func readyWatchdogAndStoppingReachSystemd() async throws {
        let dir = TemporaryDirectory()
        let notify = try NotifyListener(path: dir.file("notify.sock"))
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 10,
                                             environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])
        try await eventually("READY=1") { !notify.times(of: "READY=1").isEmpty }
        let ready = try #require(notify.received.first { $0.1.contains("READY=1") })
        #expect(ready.1.contains("STATUS="))
        try await daemon.waitForDevice()
        try await eventually("watchdog pings", seconds: 5) { notify.times(of: "WATCHDOG=1").count >= 5 }
        try await eventually("STATUS naming the unit") { notify.received.contains { $0.1.contains("DX1-000123") } }
        daemon.child.signal(SIGTERM)
        #expect(await daemon.child.waitForExit() == 0)
        #expect(!notify.times(of: "STOPPING=1").isEmpty)
    }

    @Test func aWedgedDeviceSessionStopsTheWatchdogPings() async throws {
        let dir = TemporaryDirectory()
        let notify = try NotifyListener(path: dir.file("notify.sock"))
        let start = Date()
        // WATCHDOG_USEC 400 ms: a ping every 200 ms while the session answers.
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 10,
                                             environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000",
                                                           "DEXAD_TEST_WEDGE_SESSION_AFTER_MS": "1500"])
        try await eventually("pings before the wedge") { notify.times(of: "WATCHDOG=1").count >= 3 }
        // The session is wedged 1.5 s after dexad starts; by 3 s the pings must have stopped.
        let end = start.addingTimeInterval(4.5)
        try await Task.sleep(for: .seconds(max(0, end.timeIntervalSinceNow)))
        let pings = notify.times(of: "WATCHDOG=1")
        let late = pings.filter { $0 > start.addingTimeInterval(3.0) }
        #expect(pings.count >= 3)
        #expect(late.isEmpty, "watchdog pings went on while the session was wedged: \(late.count) after 3 s")
        #expect(daemon.child.log.contains("withholding the systemd watchdog ping"))
        daemon.child.signal(SIGKILL)
    }

    @Test func takesTheListeningSocketSystemdPasses() async throws {
        let dir = TemporaryDirectory()
        let activated = dir.file("activated.sock")
        let listener = try UnixSocket.listen(path: activated)
        // systemd hands the socket over as fd 3 with LISTEN_PID set to the service's pid: a
        // shell moves it from stdin to fd 3 and execs dexad with its own pid.
        let exe = BuiltProducts.path("dexad")
        let config = dir.file("dexad.conf")
        FileManager.default.createFile(atPath: config, contents: Data("audit_log = \(dir.file("audit.log"))\n".utf8))
        let script = "exec 3<&0 0</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1; exec '\(exe)' --simulator --config '\(config)' --socket '\(dir.file("unused.sock"))' --state-directory '\(dir.file("state"))' --time-scale 10"
        let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", script], logPath: dir.file("dexad.log"),
                                     standardInput: FileHandle(fileDescriptor: listener.fd, closeOnDealloc: false))
        defer { child.stop() }
        listener.close()  // the daemon holds its own copy now
        try await eventually("device.info over the inherited socket") {
            (try? await ControlConnection.with(socketPath: activated) { try await $0.call("device.info") }) != nil
        }
        #expect(!FileManager.default.fileExists(atPath: dir.file("unused.sock")), "dexad bound its own socket as well")
        let info = try await ControlConnection.with(socketPath: activated) { try await $0.call("device.info") }
        #expect(info["device"]?["serial"]?.stringValue == "DX1-000123")
    }

    @Test func serviceReportHoldsWhatItPromises() async throws {
        let dir = TemporaryDirectory()
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 20)
        try await daemon.waitForDevice()
        _ = try await daemon.call("scan.run", .object(["lines": .number(40)]))
        let out = dir.file("report.tar.gz")
        let r = try await daemon.cli(["service", "report", "--captures", "3", "--output", out])
        #expect(r.status == 0, "\(r.err)")
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/bin/tar")
        tar.arguments = ["-tzf", out]
        let pipe = Pipe()
        tar.standardOutput = pipe
        try tar.run()
        let listing = String(decoding: await Task.detached { pipe.fileHandleForReading.readDataToEndOfFile() }.value, as: UTF8.self)
        tar.waitUntilExit()
        for file in ["versions.txt", "config.txt", "daemon.log", "firmware.log", "sensors.csv", "selftest.txt",
                     "calibration.txt", "metrics.prom", "status.json", "dicom-queue.json"] {
            #expect(listing.contains("/" + file), "report lacks \(file)")
        }
        // The calibration as the next scan would load it: this daemon has none.
        let extract = Process()
        extract.executableURL = URL(fileURLWithPath: "/bin/tar")
        extract.arguments = ["-xzOf", out, "--wildcards", "*/calibration.txt"]
        let text = Pipe()
        extract.standardOutput = text
        try extract.run()
        let calibration = String(decoding: await Task.detached { text.fileHandleForReading.readDataToEndOfFile() }.value, as: UTF8.self)
        extract.waitUntilExit()
        #expect(calibration.hasPrefix("no calibration a patient may be measured with") && calibration.contains("dexa service calibrate"), "\(calibration)")
        #expect(listing.contains("/captures/") && listing.contains(".dxcap"))
        let metrics = try await daemon.cli(["service", "metrics", "--prometheus"])
        #expect(metrics.out.contains("dexa_scans_total{result=\"completed\"} 1"))
        #expect(metrics.out.contains("dexa_exposure_seconds_total"))
    }
}

/// Roles from the peer's credentials, with real users and groups (needs root, as in CI).
@Suite("Roles on the control socket", .serialized, .enabled(if: ProcessInfo.processInfo.environment["CI"] == "true"
                      || (getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/useradd"))))
struct RoleTests {
    static let techGroup = "dxt-tech-grp", serviceGroup = "dxt-svc-grp"
    static let tech = "dxt-tech", service = "dxt-svc", stranger = "dxt-none"

    static func run(_ args: [String]) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: args[0])
        p.arguments = Array(args.dropFirst())
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try? p.run()
        p.waitUntilExit()
    }

    static func createUsers() {
        run(["/usr/sbin/groupadd", "-f", techGroup])
        run(["/usr/sbin/groupadd", "-f", serviceGroup])
        run(["/usr/sbin/useradd", "-M", "-N", "-g", "nogroup", "-G", techGroup, "-s", "/usr/sbin/nologin", tech])
        run(["/usr/sbin/useradd", "-M", "-N", "-g", "nogroup", "-G", serviceGroup, "-s", "/usr/sbin/nologin", service])
        run(["/usr/sbin/useradd", "-M", "-N", "-g", "nogroup", "-s", "/usr/sbin/nologin", stranger])
    }

    static func uid(_ name: String) -> UInt32? { getpwnam(name).map { $0.pointee.pw_uid } }

    @Test func eachRoleGetsWhatItMayAndTheAuditLogShowsIt() async throws {
        Self.createUsers()
        let dir = TemporaryDirectory()
        chmod(dir.path, 0o755)
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 20,
                                             config: ["technologist_group = \(Self.techGroup)", "service_group = \(Self.serviceGroup)",
                                                      "socket_mode = 0666"])
        try await daemon.waitForDevice()
        let sock = ["--socket", daemon.socketPath]

        // Service engineer: everything.
        let svcSensors = try await runCLI(["service", "sensors"] + sock, asUser: Self.service)
        #expect(svcSensors.status == 0, "\(svcSensors.err)")
        let svcScan = try await runCLI(["scan", "--lines", "20", "--json"] + sock, asUser: Self.service)
        #expect(svcScan.status == 0, "\(svcScan.err)")

        // Technologist: status and positioning, not service methods or raw scans.
        let techStatus = try await runCLI(["status"] + sock, asUser: Self.tech)
        #expect(techStatus.status == 0, "\(techStatus.err)")
        let techHome = try await runCLI(["home"] + sock, asUser: Self.tech)
        #expect(techHome.status == 0, "\(techHome.err)")
        let techService = try await runCLI(["service", "sensors"] + sock, asUser: Self.tech)
        #expect(techService.status == ExitStatus.permissionDenied.rawValue)
        #expect(techService.err.contains("permission denied"))
        let techScan = try await runCLI(["scan", "--lines", "20"] + sock, asUser: Self.tech)
        #expect(techScan.status == ExitStatus.permissionDenied.rawValue)
        #expect(techScan.err.contains("permission denied"))

        // Anyone else: refused before the request is read.
        let stranger = try await runCLI(["status"] + sock, asUser: Self.stranger)
        #expect(stranger.status == ExitStatus.permissionDenied.rawValue, "\(stranger.err)")
        #expect(stranger.err.contains("permission denied"))

        let audit = daemon.auditEntries
        let svcUID = try #require(Self.uid(Self.service)), techUID = try #require(Self.uid(Self.tech))
        let strangerUID = try #require(Self.uid(Self.stranger))
        #expect(audit.contains { $0["uid"]?.intValue == Int(svcUID) && $0["method"]?.stringValue == "scan.run" && $0["decision"]?.stringValue == "allowed" })
        #expect(audit.contains { $0["uid"]?.intValue == Int(techUID) && $0["method"]?.stringValue == "service.sensors" && $0["decision"]?.stringValue == "refused" })
        #expect(audit.contains { $0["uid"]?.intValue == Int(techUID) && $0["method"]?.stringValue == "scan.run" && $0["decision"]?.stringValue == "refused" })
        #expect(audit.contains { $0["uid"]?.intValue == Int(strangerUID) && $0["method"]?.stringValue == "(connect)" && $0["decision"]?.stringValue == "refused" })
    }
}
