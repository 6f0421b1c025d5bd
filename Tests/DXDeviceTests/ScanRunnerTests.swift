import DXAcquisition
import DXDevice
import DXProtocol
import DXSimulator
import DXTransport
import Logging
import Synchronization
import Testing

/// A device session and scan runner on an embedded simulator.
struct Bench {
    let sim: EmbeddedSimulator
    let session: DeviceSession
    let runner: ScanRunner
    let run: Task<Void, Never>

    init(speed: Double = 20, freedoms: LinkFreedoms = .canonical, seed: UInt64 = 1) async throws {
        let clock = ScaledClock(speed: speed)
        var configuration = SimulatorConfiguration(seed: seed)
        configuration.freedoms = freedoms
        sim = EmbeddedSimulator(configuration: configuration, clock: clock)
        let s = sim
        run = Task { await s.run() }
        // Command timeouts are device time; keep them at least 500 ms of wall time however fast
        // the clock runs.
        session = DeviceSession(transport: sim.transport, clock: clock, commandTimeout: .milliseconds(Int64(max(2000, 500 * speed))))
        runner = ScanRunner(session: session, clock: clock)
        try await session.connect()
        for _ in 0..<200 where try await session.refreshStatus().state != .idle { try await Task.sleep(for: .milliseconds(5)) }
    }

    func stop() { sim.shutdown(); run.cancel() }

    static func plan(lines: UInt32 = 400, perFrame: UInt16 = 8) -> ScanPlan {
        ScanPlan(mode: .dual, xUm: 200_000, yStartUm: 0, lineCount: lines, lineStepUm: 1000, linePeriodUs: 10_000,
                 tubeCurrentUA: 1000, linesPerFrame: perFrame, role: .qc)
    }
}

@Suite("Device session and scan runner on the simulator", .serialized)
struct ScanRunnerTests {
    @Test func heartbeatsKeepALongScanAlive() async throws {
        // 5×: the watchdog's 1000 ms is 200 ms of wall time, more than the start-up burst of
        // the other suites (they launch daemons and simulators) takes from this one.
        let b = try await Bench(speed: 5)
        defer { b.stop() }
        // 400 lines × 10 ms = 4 s of device time: four watchdog periods.
        let o = try await b.runner.run(Bench.plan())
        #expect(o.result == .completed)
        #expect(o.lines == 400)
        #expect(o.exposureMs == 4000)
        #expect(o.xrayOffVerified)
        let c = await b.session.counters
        #expect(c.heartbeatsSent >= 8)
        #expect(await !b.session.heartbeatRunning)
        #expect(await b.sim.firmware.snapshot.watchdogExpiries.isEmpty)
    }

    @Test func aFiveMinuteDarkScanInUnderASecond() async throws {
        // A spine-length scan as the protocol makes it: 1,500 lines × 200 ms = 300 s of device
        // time, at 1000× speed. A dark scan has X-rays off, so no heartbeat has to keep pace
        // with a clock this fast.
        let b = try await Bench(speed: 1000)
        defer { b.stop() }
        let wall = ContinuousClock.now
        let plan = ScanPlan(mode: .dark, xUm: 200_000, yStartUm: 0, lineCount: 1_500, lineStepUm: 150, linePeriodUs: 200_000,
                            tubeCurrentUA: 0, linesPerFrame: 16, role: .dark)
        let o = try await b.runner.run(plan)
        let took = ContinuousClock.now - wall
        #expect(o.result == .completed)
        #expect(o.lines == 1_500)
        #expect(o.gaps == 0)
        #expect(o.exposureMs == 0)
        #expect(o.deviceSpanUs == 1_499 * 200_000)
        #expect(took < .seconds(1), "took \(took)")
        print("5-minute dark scan: \(took) wall")
    }

    @Test func aOneMinuteExposureWithHeartbeatsAt10x() async throws {
        // 6,000 lines × 10 ms = 60 s of exposure, 240 heartbeats, in about 6 s of wall time.
        let b = try await Bench(speed: 10)
        defer { b.stop() }
        let plan = ScanPlan(mode: .dual, xUm: 200_000, yStartUm: 0, lineCount: 6_000, lineStepUm: 100, linePeriodUs: 10_000,
                            tubeCurrentUA: 1000, linesPerFrame: 64, role: .qc)
        let o = try await b.runner.run(plan)
        #expect(o.result == .completed)
        #expect(o.lines == 6_000)
        #expect(o.exposureMs == 60_000)
        let gap = await b.session.longestSendGap
        #expect(gap < .milliseconds(1000), "longest gap between host frames: \(gap)")
        print("60 s exposure at 10x: longest host-frame gap \(gap) device time")
    }

    @Test func droppedDataFramesAreCountedAsGaps() async throws {
        let b = try await Bench()
        defer { b.stop() }
        await b.sim.inject(.dropDataFrames(3))
        let o = try await b.runner.run(Bench.plan(lines: 80))
        // The first three frames of the session: no seq precedes them, the line numbers tell.
        #expect(o.gaps == 1)
        #expect(o.missingLines == 3 * 8)
        #expect(o.lines == 80 - 3 * 8)
        // A loss later in the session is also seen by the data seq.
        await b.sim.inject(.dropDataFrames(0))
        let second = Task { try await b.runner.run(Bench.plan(lines: 80)) }
        try await Task.sleep(for: .milliseconds(5))
        await b.sim.inject(.dropDataFrames(2))
        let o2 = try await second.value
        #expect(o2.gaps >= 1)
        #expect(o2.lines + o2.missingLines == 80)
        #expect(await b.session.counters.dataGaps >= 1)
    }

    @Test func corruptedFramesResyncAndTheScanGoesOn() async throws {
        let b = try await Bench()
        defer { b.stop() }
        await b.sim.inject(.corruptFrames(.dataIn, 2))
        await b.sim.inject(.garbage(.responseIn, 50))
        let o = try await b.runner.run(Bench.plan(lines: 80))
        #expect(o.result == .completed)
        #expect(o.lines == 80 - 2 * 8)
        let c = await b.session.counters
        #expect(c.dataErrors.resyncs >= 1)
        #expect(c.dataErrors.crcErrors >= 1)
        #expect(o.missingLines == 2 * 8)
    }

    @Test func unplugMidScanIsReportedInterrupted() async throws {
        let b = try await Bench(speed: 5)
        defer { b.stop() }
        let scan = Task { try await b.runner.run(Bench.plan(lines: 1000)) }
        try await Task.sleep(for: .milliseconds(100))
        await b.sim.inject(.unplug)
        do {
            _ = try await scan.value
            Issue.record("an unplugged scan cannot complete")
        } catch let ScanError.ended(o) {
            #expect(o.result == .interrupted)
            #expect(o.lines > 0 && o.lines < 1000)
        }
        // The device's own watchdog ends the exposure.
        try await Task.sleep(for: .milliseconds(300))
        #expect(await !b.sim.firmware.snapshot.xrayOn)
    }

    @Test func cancellingTheCallerAbortsTheScan() async throws {
        let b = try await Bench(speed: 5)
        defer { b.stop() }
        let scan = Task { try await b.runner.run(Bench.plan(lines: 1000)) }
        try await Task.sleep(for: .milliseconds(100))
        scan.cancel()
        do {
            _ = try await scan.value
            Issue.record("a cancelled scan cannot complete")
        } catch let ScanError.ended(o) {
            #expect(o.result == .aborted)
            #expect(o.xrayOffVerified)
        }
        #expect(await !b.sim.firmware.snapshot.xrayOn)
        #expect(await b.sim.firmware.snapshot.commandLog.contains { $0.hasSuffix("ABORT_SCAN") })
    }

    @Test func aFaultAbortsWithItsCode() async throws {
        let b = try await Bench(speed: 5)
        defer { b.stop() }
        let scan = Task { try await b.runner.run(Bench.plan(lines: 1000)) }
        try await Task.sleep(for: .milliseconds(100))
        await b.sim.inject(.trip(.tubeArc, message: "arc detected"))
        do {
            _ = try await scan.value
            Issue.record("a faulted scan cannot complete")
        } catch let ScanError.ended(o) {
            #expect(o.result == .aborted)
            #expect(o.reason?.contains("tube arc") == true)
        }
        await #expect(throws: ScanError.self) { try await b.runner.run(Bench.plan(lines: 10)) }
    }
}

@Suite("Scan sequences")
struct ScanSequenceTests {
    @Test func noOtherScanSlipsIntoASequence() async throws {
        let b = try await Bench(speed: 5)
        defer { b.stop() }
        let seq = Task { try await b.runner.runSequence([Bench.plan(lines: 200), Bench.plan(lines: 200)], phantom: nil) }
        // Only once the sequence has begun does it own the runner.
        while await b.sim.firmware.snapshot.commandLog.filter({ $0.hasSuffix("START_SCAN") }).isEmpty {
            try await Task.sleep(for: .milliseconds(2))
        }
        // Keep trying to start a scan for as long as the sequence runs: every attempt is refused,
        // also between its two scans.
        var refused = 0
        while !(await b.sim.firmware.snapshot.commandLog.filter { $0.hasSuffix("START_SCAN") }.count >= 2) {
            do {
                _ = try await b.runner.run(Bench.plan(lines: 10))
                Issue.record("a scan started inside a sequence")
            } catch is ScanError { refused += 1 }
            try await Task.sleep(for: .milliseconds(5))
        }
        let (outcomes, _) = try await seq.value
        #expect(outcomes.map(\.result) == [.completed, .completed])
        #expect(refused > 0)
    }

    /// An abort that lands between two scans of a sequence (an exam's abort while the dark
    /// reference has just ended) stops the sequence: the next scan never exposes.
    @Test func anAbortBetweenTwoScansStopsTheSequence() async throws {
        let b = try await Bench(speed: 10)
        defer { b.stop() }
        let dark = ScanPlan(mode: .dark, xUm: 200_000, yStartUm: 0, lineCount: 20, lineStepUm: 1000, linePeriodUs: 10_000,
                            tubeCurrentUA: 0, linesPerFrame: 8, role: .dark)
        let runner = b.runner
        let aborted = AbortAnswer()
        do {
            _ = try await runner.runSequence([dark, Bench.plan(lines: 100), Bench.plan(lines: 100)], phantom: nil, onOutcome: { o in
                // Runs on the runner as the dark scan ends; the abort reaches it at its next await.
                if o.mode == .dark { aborted.started(Task { try? await runner.abort() }) }
            })
            Issue.record("the sequence went on after the abort")
        } catch let e as ScanError {
            #expect(e.outcome?.result == .aborted)
            #expect(e.outcome?.lines == 0)
        }
        // The sequence can end before abort() has returned (it waits for XRAY_OFF's reply).
        let answer = await aborted.task?.value
        #expect(answer.flatMap { $0 } != nil, "abort() found nothing running")
        // Nothing was exposed after the dark scan.
        #expect(await b.sim.firmware.snapshot.exposures.isEmpty)
        #expect(await !b.session.heartbeatRunning)
    }
}

/// The task that called `abort()`, handed out of the runner's callback so the test can wait for its answer.
final class AbortAnswer: Sendable {
    private let value = Mutex<Task<UInt32?, Never>?>(nil)
    func started(_ t: Task<UInt32?, Never>) { value.withLock { $0 = t } }
    var task: Task<UInt32?, Never>? { value.withLock { $0 } }
}
