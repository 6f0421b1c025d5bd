import DXAcquisition
import DXDevice
import DXProtocol
import DXSimulator
import Foundation
import Testing

/// The host against a DX-1 that uses the freedoms ICD v1 leaves it (docs/simulator.md):
/// events after their responses and late, records split and gathered, garbage between
/// frames, SCAN_COMPLETE before the last data, BUSY status, frames lost on purpose.
@Suite("Conformance: the host under every order the ICD allows", .serialized)
struct ConformanceTests {
    /// 1.5 s of exposure: longer than the watchdog, so a heartbeat that stops is caught.
    static func plan(lines: UInt32 = 150, perFrame: UInt16 = 16) -> ScanPlan {
        ScanPlan(mode: .dual, xUm: 200_000, yStartUm: 0, lineCount: lines, lineStepUm: 1000, linePeriodUs: 10_000,
                 tubeCurrentUA: 1000, linesPerFrame: perFrame, role: .qc)
    }

    /// The longest host-frame gap a test may assert at `speed`, on the device clock. At 1×
    /// it is the ICD's 250 ms: the heartbeat's 125 ms leave 125 ms for scheduling, 3× the
    /// worst jitter measured here. At 10× that margin is 12.5 ms of wall time, less than a
    /// machine with both cores busy can hold a thread back (384 ms of device time was seen
    /// once in four loaded runs), so a fast test asserts only what keeps the scan and the
    /// patient safe, a gap under the watchdog (docs/RELIABILITY.md); the 10× figures in the
    /// closing notes come from unloaded runs and are printed by every run.
    static func gapLimit(speed: Double) -> Double {
        speed <= 1 ? ICDTiming.heartbeatLimit.milliseconds : ICDTiming.watchdog.milliseconds
    }

    /// The interoperability report: STATE_CHANGED IDLE→READY after CONFIGURE_SCAN's response
    /// (and 20 ms late) stopped the heartbeat and the watchdog aborted every scan.
    @Test(arguments: [(10.0, 0.0, 100), (10.0, 20.0, 100), (1.0, 0.0, 12), (1.0, 20.0, 12)])
    func eventsAfterTheirResponsesDoNotStopTheHeartbeat(speed: Double, lagMs: Double, scans: Int) async throws {
        var f = LinkFreedoms.canonical
        f.eventsAfterResponse = true
        f.eventLagMaxMs = lagMs
        // A longer documented run: DEXA_CONFORMANCE_1X_SCANS=100 (docs/simulator.md).
        let env = ProcessInfo.processInfo.environment["DEXA_CONFORMANCE_1X_SCANS"].flatMap { Int($0) }
        let scans = speed == 1 ? (env ?? scans) : scans
        let b = try await Bench(speed: speed, freedoms: f)
        defer { b.stop() }
        var completed = 0
        for _ in 0..<scans {
            let o = try await b.runner.run(Self.plan())
            if o.result == .completed && o.lines == 150 { completed += 1 }
        }
        let snap = await b.sim.firmware.snapshot
        let gaps = snap.exposures.map(\.longestHostGapMs)
        let longest = gaps.max() ?? .infinity
        print("events after response, lag ≤ \(lagMs) ms, \(speed)x: \(completed)/\(scans) completed, longest host gap \(longest) ms (device clock)")
        #expect(completed == scans)
        #expect(snap.watchdogExpiries.isEmpty)
        #expect(gaps.count == scans)
        #expect(longest <= Self.gapLimit(speed: speed), "longest gap between host frames \(longest) ms")
        #expect(await b.session.counters.heartbeatFailures == 0)
    }

    /// Every freedom at once (events after responses and up to 40 ms late, records split and
    /// gathered, garbage, SCAN_COMPLETE first, BUSY status) at 1×, where the ICD's 250 ms is
    /// asserted on the device clock for every scan.
    @Test func everyFreedomAtOnceInRealTime() async throws {
        let b = try await Bench(speed: 1, freedoms: .all(lagMs: 40))
        defer { b.stop() }
        for lines in [150, 120] as [UInt32] {
            for perFrame in [16, 5] as [UInt16] {
                let o = try await b.runner.run(Self.plan(lines: lines, perFrame: perFrame))
                #expect(o.result == .completed)
                #expect(o.lines == Int(lines))
                #expect(o.longestHostGapMs <= ICDTiming.heartbeatLimit.milliseconds)
            }
        }
        let snap = await b.sim.firmware.snapshot
        let longest = snap.exposures.map(\.longestHostGapMs).max() ?? .infinity
        print("all freedoms at 1×: \(snap.exposures.count) scans, longest host gap \(longest) ms (device clock)")
        #expect(snap.exposures.count == 4)
        #expect(longest <= ICDTiming.heartbeatLimit.milliseconds)
    }

    /// Many seeds, each a different mix of freedoms, three scans each (one with the first
    /// data frame of the session lost on odd seeds): every scan completes, the heartbeat
    /// keeps within the ICD's 250 ms on the device clock, the lines and frames reported
    /// missing are exactly those lost on purpose, and the dose is the device's.
    @Test func everySeedEveryScanCompletesAndAccountsForWhatWasLost() async throws {
        var outcomes: [String: Int] = [:]
        var longestOverall = 0.0, overLimit = 0
        let seeds: [UInt64] = Array(1...30)
        var scans = 0
        for seed in seeds {
            var f = LinkFreedoms(seed: seed)
            f.loseFirstDataFrame = seed % 2 == 1
            let b = try await Bench(speed: 10, freedoms: f, seed: seed)
            defer { b.stop() }
            var missingLines = 0
            var missingFrames: UInt64 = 0
            for (lines, perFrame) in [(150, 16), (120, 7), (101, 64)] as [(UInt32, UInt16)] {
                let o = try await b.runner.run(Self.plan(lines: lines, perFrame: perFrame))
                scans += 1
                outcomes[o.result.rawValue, default: 0] += 1
                #expect(o.result == .completed, "\(f)")
                #expect(o.lines + o.missingLines == Int(lines), "\(f)")
                #expect(o.exposureMs == lines * 10, "\(f)")
                #expect(!o.doseEstimated)
                #expect(o.xrayOffVerified, "\(f)")
                missingLines += o.missingLines
                missingFrames += o.missingFrames
            }
            let snap = await b.sim.firmware.snapshot
            #expect(missingLines == snap.dataLinesLost, "\(f)")
            #expect(missingFrames == UInt64(snap.dataFramesLost), "\(f)")
            #expect(snap.watchdogExpiries.isEmpty, "\(f)")
            let longest = snap.exposures.map(\.longestHostGapMs).max() ?? .infinity
            longestOverall = max(longestOverall, longest)
            if longest > ICDTiming.heartbeatLimit.milliseconds { overLimit += 1 }
            #expect(longest <= Self.gapLimit(speed: 10), "\(f): longest host gap \(longest) ms")
        }
        print("conformance: \(seeds.count) seeds, \(scans) scans, outcomes \(outcomes); longest host gap \(longestOverall) ms (device clock, 10×), \(overLimit) seeds over 250 ms")
    }

    /// SCAN_ABORTED carries no exposure: the host estimates it, within 5 % of what the
    /// simulator actually exposed, for a host abort, an interlock and a lost link.
    @Test(arguments: ["host", "interlock", "unplug"])
    func anAbortedScansDoseIsEstimated(how: String) async throws {
        let b = try await Bench(speed: 10, freedoms: .all(lagMs: 20))
        defer { b.stop() }
        // Learn the unit's dose rate from one completed scan first.
        let done = try await b.runner.run(Self.plan())
        #expect(done.dapMGyCm2 > 0)
        let scan = Task { try await b.runner.run(Self.plan(lines: 400)) }
        // Let about 2 s of the 4 s exposure pass (device time).
        for _ in 0..<400 {
            if await b.sim.firmware.snapshot.dataFramesSent >= 10 + 12 { break }
            try await Task.sleep(for: .milliseconds(2))
        }
        switch how {
        case "host": scan.cancel()
        case "interlock": await b.sim.inject(.interlock(.roomDoorClosed, closed: false))
        default: await b.sim.inject(.unplug)
        }
        let outcome: ScanOutcome
        do {
            outcome = try await scan.value
            Issue.record("the scan completed")
            return
        } catch let e as ScanError {
            outcome = try #require(e.outcome)
        }
        // After an unplug X-rays stay on until the device's watchdog ends them.
        for _ in 0..<1000 where await b.sim.firmware.snapshot.xrayOn { try await Task.sleep(for: .milliseconds(2)) }
        let snap = await b.sim.firmware.snapshot
        #expect(snap.exposures.count == 2)
        let actual = try #require(snap.exposures.last).durationMs
        #expect(outcome.doseEstimated)
        let error = (Double(outcome.exposureMs) - actual) / actual
        print("\(how): estimated \(outcome.exposureMs) ms, actual \(actual) ms (\(String(format: "%+.1f", error * 100)) %), DAP \(outcome.dapMGyCm2)")
        switch how {
        case "unplug":
            // The host cannot know when the device's watchdog ended it: the estimate is an
            // upper bound, at most one watchdog period over.
            #expect(error >= -0.05)
            #expect(Double(outcome.exposureMs) - actual <= ICDTiming.watchdog.milliseconds + 50)
        case "host":
            // Until XRAY_OFF's answer reached the host: an upper bound (never 5 % short); what
            // it errs high by is the host's own delay, large only on a loaded machine.
            #expect(error >= -0.05)
            #expect(error <= 0.25)
        default:
            // The device ended it and said so: the interval and its line count agree.
            #expect(abs(error) <= 0.05)
        }
        // DAP follows the unit's own rate (dap / mA·s of the completed scan).
        let rate = done.dapMGyCm2 / (Double(done.exposureMs) / 1000)
        #expect(abs(outcome.dapMGyCm2 - rate * Double(outcome.exposureMs) / 1000) < 0.001)
    }

    /// SCAN_COMPLETE lost to damaged frames: past the planned time the runner asks the device,
    /// finds the scan over, ends it as interrupted, stops the heartbeat and is free again.
    @Test func aLostEndEventIsFoundByAskingTheDevice() async throws {
        let b = try await Bench(speed: 10)
        defer { b.stop() }
        let scan = Task { try await b.runner.run(Self.plan(lines: 160, perFrame: 16)) }
        // Damage every frame on EP 0x81 from the last data frame on, for a while.
        for _ in 0..<2000 {
            if await b.sim.firmware.snapshot.dataFramesSent >= 9 { break }
            try await Task.sleep(for: .milliseconds(1))
        }
        await b.sim.inject(.corruptFrames(.responseIn, 12))
        let outcome: ScanOutcome
        do {
            outcome = try await scan.value
            Issue.record("SCAN_COMPLETE got through: \(outcome)")
            return
        } catch let e as ScanError {
            outcome = try #require(e.outcome)
        }
        #expect(outcome.result == .interrupted)
        #expect(outcome.reason?.contains("end event never arrived") == true, "\(outcome.reason ?? "")")
        #expect(outcome.xrayOffVerified)
        #expect(await !b.session.heartbeatRunning)
        #expect(try await b.runner.run(Self.plan()).result == .completed)
    }

    /// Two frames lost, the first of them the session's first data frame: the data seq sees
    /// only the second; the line numbers give the first.
    @Test func theFirstDataFrameOfASessionLostIsCounted() async throws {
        var f = LinkFreedoms.canonical
        f.loseFirstDataFrame = true
        let b = try await Bench(speed: 10, freedoms: f)
        defer { b.stop() }
        await b.sim.inject(.dropDataFrames(0))
        let scan = Task { try await b.runner.run(Self.plan(lines: 160, perFrame: 16)) }
        for _ in 0..<400 {
            if await b.sim.firmware.snapshot.dataFramesSent >= 4 { break }
            try await Task.sleep(for: .milliseconds(1))
        }
        await b.sim.inject(.dropDataFrames(1))
        let o = try await scan.value
        let snap = await b.sim.firmware.snapshot
        #expect(snap.dataFramesLost == 2)
        #expect(o.missingFrames == 2)
        #expect(o.missingLines == 32)
        #expect(o.lines == 128)
    }

    /// The watchdog's two events in either order give one reason.
    @Test(arguments: [false, true])
    func oneAbortReasonWhateverTheEventOrder(watchdogEventFirst: Bool) async throws {
        var f = LinkFreedoms.canonical
        f.watchdogEventFirst = watchdogEventFirst
        let b = try await Bench(speed: 10, freedoms: f)
        defer { b.stop() }
        let scan = Task { try await b.runner.run(Self.plan(lines: 400)) }
        for _ in 0..<400 {
            if await b.sim.firmware.snapshot.xrayOn { break }
            try await Task.sleep(for: .milliseconds(1))
        }
        // The host falls silent (a hung host): the device's watchdog ends the scan.
        await b.session.stopHeartbeat()
        do {
            _ = try await scan.value
            Issue.record("the scan completed")
        } catch let e as ScanError {
            #expect(e.outcome?.reason == "device watchdog expired")
            #expect(e.outcome?.doseEstimated == true)
        }
    }

    /// A unit that answers every other GET_STATUS with BUSY while it moves or scans.
    @Test func busyStatusAnswersAreAskedAgain() async throws {
        var f = LinkFreedoms.canonical
        f.busyStatusWhileBusy = true
        let b = try await Bench(speed: 10, freedoms: f)
        defer { b.stop() }
        let scan = Task { try await b.runner.run(Self.plan()) }
        for _ in 0..<400 {
            if await b.sim.firmware.snapshot.xrayOn { break }
            try await Task.sleep(for: .milliseconds(1))
        }
        for _ in 0..<4 { #expect(try await b.session.refreshStatus().state == .scanning) }
        #expect(try await scan.value.result == .completed)
    }

    /// After RESET a unit may come back in BOOT and leave once more when its firmware starts:
    /// the host waits it out and connects once, with no failed handshake.
    @Test func aUnitThatReenumeratesAfterBootIsWaitedFor() async throws {
        var f = LinkFreedoms.canonical
        f.reenumeratesAfterBoot = true
        let b = try await Bench(speed: 10, freedoms: f)
        defer { b.stop() }
        let notices = await b.session.notices()
        _ = try? await b.session.execute(.reset)
        // Reconnect as the daemon's device service does: soon and again.
        var connected = 0
        var failures: [String] = []
        var states: [DeviceState] = []
        for _ in 0..<100 {
            do {
                try await b.session.connect()
                connected += 1
                states.append(await b.session.state ?? .boot)
                break
            } catch {
                failures.append("\(error)")
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        #expect(connected == 1)
        #expect(states == [.idle])
        _ = notices
        #expect(try await b.runner.run(Self.plan()).result == .completed)
        print("reset with re-enumeration: \(failures.count) refused connects while the unit was away")
    }
}
