import DXControl
import DXProtocol
import DXTestSupport
import Foundation
import Testing

/// The real `dexad` against a real `dexa-sim`, over the real control socket.
@Suite("dexad + dexa-sim end to end", .serialized)
struct DaemonSimulatorTests {
    /// Starts a simulator and a daemon on it; both run `speed` times faster than real time.
    static func start(speed: Double) async throws -> (TemporaryDirectory, SimulatorProcess, DaemonProcess) {
        let dir = TemporaryDirectory()
        let sim = try await SimulatorProcess(in: dir, speed: speed)
        let daemon = try await DaemonProcess(in: dir, device: "sim:\(sim.devicePath)", timeScale: speed)
        try await daemon.waitForDevice()
        return (dir, sim, daemon)
    }

    @Test func homeThenDualScanDeliversEveryLine() async throws {
        let (dir, sim, daemon) = try await Self.start(speed: 20)
        defer { withExtendedLifetime(dir) {} }
        let home = try await daemon.call("device.home")
        #expect(home["x_um"]?.intValue == 0)
        let lines = 300, period = 10_000, perFrame = 16
        let r = try await daemon.call("scan.run", .object([
            "mode": .string("dual"), "lines": .number(Double(lines)), "line_period_us": .number(Double(period)),
            "lines_per_frame": .number(Double(perFrame)),
        ]))
        #expect(r["result"]?.stringValue == "completed")
        #expect(r["lines"]?.intValue == lines)
        #expect(r["gaps"]?.intValue == 0)
        #expect(r["missing_frames"]?.intValue == 0)
        // Exposure on the simulator's clock is exactly lines × period.
        #expect(r["exposure_ms"]?.intValue == lines * period / 1000)
        #expect((r["dap_mgy_cm2"]?.numberValue ?? 0) > 0)
        #expect(r["xray_off"] == .bool(true))

        let status = try await sim.status()
        #expect(status["xrayOn"] == .bool(false))
        let framesSent = (lines + perFrame - 1) / perFrame
        #expect(status["dataFramesSent"]?.intValue == framesSent)

        // The capture the daemon recorded holds every data frame, in seq order, with every line.
        let capturePath = try #require(r["capture"]?.stringValue)
        let capture = try CaptureFormat.parse(Array(try Data(contentsOf: URL(fileURLWithPath: capturePath))))
        #expect(!capture.truncatedTail)
        var decoder = FrameDecoder()
        var seqs: [UInt32] = []
        var lineIndices: [UInt32] = []
        for record in capture.records where record.endpoint == .dataIn {
            decoder.append(record.bytes)
            while let f = decoder.next() {
                seqs.append(f.seq)
                lineIndices += try DataFrame(payload: f.payload).lines.map(\.index)
            }
        }
        #expect(seqs == Array(1...UInt32(framesSent)))
        #expect(lineIndices == Array(0..<UInt32(lines)))
        // Only a unit that puts garbage between frames (an ICD freedom) makes the reader resync.
        let garbage = status["freedoms"]?.stringValue?.contains("garbage") == true
        #expect(decoder.errors.resyncs == 0 || garbage)
        #expect(capture.records.contains { $0.endpoint == .commandOut })
    }

    @Test func sigkillMidScanLetsTheWatchdogEndTheExposure() async throws {
        // Real time, so that the watchdog's 1000 ms can be measured against the host's last frame.
        let (dir, sim, daemon) = try await Self.start(speed: 1)
        defer { withExtendedLifetime(dir) {} }
        let scan = Task { try? await daemon.call("scan.run", .object(["lines": .number(1500), "y_start_um": .number(0), "line_period_us": .number(10_000)])) }
        try await eventually("X-rays on") { (try? await sim.status())?["xrayOn"] == .bool(true) }
        try await Task.sleep(for: .milliseconds(600))
        daemon.child.signal(SIGKILL)
        _ = await daemon.child.waitForExit()
        try await eventually("watchdog expiry", seconds: 5) {
            if case .array(let a)? = (try? await sim.status())?["watchdogExpiries"] { return !a.isEmpty }
            return false
        }
        let status = try await sim.status()
        #expect(status["xrayOn"] == .bool(false))
        guard case .array(let expiries)? = status["watchdogExpiries"], let e = expiries.first,
              let last = e["lastHostFrameMs"]?.numberValue, let off = e["xrayOffMs"]?.numberValue else {
            Issue.record("no watchdog record")
            return
        }
        let gap = off - last
        // ICD §4: more than watchdog_ms without a host frame turns X-rays off.
        #expect(gap > 1000)
        #expect(gap < 1060, "X-rays went off \(gap) ms after the last host frame")
        print("watchdog: X-rays off \(String(format: "%.1f", gap)) ms after the last host frame")
        scan.cancel()
    }

    @Test func interlockOpenedMidScanAbortsAndNamesIt() async throws {
        let (dir, sim, daemon) = try await Self.start(speed: 10)
        defer { withExtendedLifetime(dir) {} }
        async let result: Result<JSONValue, any Error> = {
            do { return .success(try await daemon.call("scan.run", .object(["lines": .number(1500), "y_start_um": .number(0)]))) } catch { return .failure(error) }
        }()
        try await eventually("X-rays on") { (try? await sim.status())?["xrayOn"] == .bool(true) }
        #expect(try await sim.control("interlock door open") == "ok")
        let outcome = await result
        guard case .failure(let error) = outcome, let rpc = error as? RPCError else {
            Issue.record("scan.run should fail, got \(outcome)")
            return
        }
        #expect(rpc.code == RPCError.scanFailedCode)
        #expect(rpc.message.contains("interlock"))
        #expect(rpc.message.contains("room door"))
        #expect(rpc.data?["xray_off"] == .bool(true))
        let status = try await sim.status()
        #expect(status["state"]?.intValue == Int(DeviceState.safe.rawValue))
        #expect(status["xrayOn"] == .bool(false))
        // A new scan is refused while the door is open, with the interlock named.
        await #expect(throws: RPCError.self) { _ = try await daemon.call("scan.run", .object(["lines": .number(10)])) }
        do { _ = try await daemon.call("scan.run", .object(["lines": .number(10)])) } catch let e as RPCError {
            #expect(e.code == RPCError.interlockCode)
            #expect(e.message.contains("room door"))
        }
        #expect(try await sim.control("interlock door close") == "ok")
        try await eventually("IDLE again") { (try? await sim.status())?["state"]?.intValue == Int(DeviceState.idle.rawValue) }
        let again = try await daemon.call("scan.run", .object(["lines": .number(20)]))
        #expect(again["result"]?.stringValue == "completed")
    }

    @Test func sigtermMidScanSendsXrayOffBeforeExit() async throws {
        let (dir, sim, daemon) = try await Self.start(speed: 10)
        defer { withExtendedLifetime(dir) {} }
        let scan = Task { try? await daemon.call("scan.run", .object(["lines": .number(1500), "y_start_um": .number(0)])) }
        try await eventually("X-rays on") { (try? await sim.status())?["xrayOn"] == .bool(true) }
        daemon.child.signal(SIGTERM)
        let exit = await daemon.child.waitForExit(seconds: 10)
        #expect(exit == 0, "dexad exit status \(String(describing: exit)); log:\n\(daemon.child.log)")
        let status = try await sim.status()
        #expect(status["xrayOn"] == .bool(false))
        guard case .array(let log)? = status["commandLog"] else { Issue.record("no command log"); return }
        let commands = log.compactMap(\.stringValue)
        #expect(commands.contains { $0.hasSuffix("XRAY_OFF") }, "commands: \(commands.suffix(6))")
        // The exposure ended by the host, not by the watchdog.
        if case .array(let expiries)? = status["watchdogExpiries"] { #expect(expiries.isEmpty) }
        scan.cancel()
    }

    @Test func cliScanPrintsJSONAndUnreachableDaemonIsOneLine() async throws {
        let (dir, sim, daemon) = try await Self.start(speed: 20)
        defer { withExtendedLifetime(sim) {} }
        let r = try await daemon.cli(["scan", "--lines", "200", "--json"])
        #expect(r.status == 0, "stderr: \(r.err) stdout: \(r.out)")
        let v = try JSONDecoder().decode(JSONValue.self, from: Data(r.out.utf8))
        #expect(v["lines"]?.intValue == 200)
        #expect(v["gaps"]?.intValue == 0)
        #expect(v["exposure_ms"]?.intValue == 2000)
        #expect(v["dap_mgy_cm2"]?.numberValue != nil)
        let info = try await daemon.cli(["info"])
        #expect(info.out.contains("DX1-000123"))

        // Exit statuses by cause (docs/console.md): bad arguments, bad parameters, device
        // busy, daemon unreachable.
        let badArgument = try await daemon.cli(["exam", "skip", "1", "left_knee", "--reason", "x"])
        #expect(badArgument.status == ExitStatus.badInput.rawValue, "\(badArgument.err)")
        let noSuchExam = try await daemon.cli(["exam", "show", "4711"])
        #expect(noSuchExam.status == ExitStatus.badInput.rawValue && noSuchExam.err.contains("no exam 4711"), "\(noSuchExam.err)")
        // 200 s of device time (10 s here), aborted once the refusal is seen.
        let long = Task { try await daemon.call(.scanRun, ScanRunParams(yStartUm: 0, lines: 20_000, lineStepUm: 50)) }
        try await eventually("the long scan running") { (try? await daemon.call(.deviceStatus))?.xrayOn == true }
        let busy = try await daemon.cli(["scan", "--lines", "20"])
        #expect(busy.status == ExitStatus.deviceUnavailable.rawValue && busy.err.contains("running"), "\(busy.status) \(busy.err)")
        _ = try await daemon.call(.scanAbort)
        _ = try? await long.value

        let missing = try await runCLI(["status", "--socket", dir.file("nobody.sock")])
        #expect(missing.status == ExitStatus.unreachable.rawValue)
        #expect(missing.err.split(separator: "\n").count == 1)
        #expect(missing.err.contains("cannot reach dexad"))
    }

    /// One harness, two ways: the same test against the daemon in this process and as the
    /// real `dexad` process.
    @Test(arguments: ["in-process", "process"])
    func theSameTestRunsInProcessOrAgainstTheProcess(_ kind: String) async throws {
        let dir = TemporaryDirectory()
        let daemon: any DaemonHarness = kind == "process"
            ? try await DaemonProcess(in: dir, device: "simulator", timeScale: 20)
            : try await InProcessDaemon(in: dir, timeScale: 20)
        try await daemon.waitForDevice()
        let scan = try await daemon.call(.scanRun, ScanRunParams(lines: 40))
        #expect(scan.result == "completed" && scan.lines == 40 && scan.xrayOff)
        let metrics = try await daemon.call(.serviceMetrics, MetricsParams()).metrics
        #expect(metrics.scansCompleted == 1 && metrics.exposureMs == UInt64(scan.exposureMs))
        if let inProcess = daemon as? InProcessDaemon {
            await inProcess.stop()
            let answered = (try? await inProcess.call(.deviceStatus)) != nil
            #expect(!answered, "the stopped daemon still answers")
        }
    }
}
