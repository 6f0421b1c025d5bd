import DXDevice
import DXProtocol
import DXTransport
import Foundation
import Logging

/// One acquisition to make: the geometry and timing of CONFIGURE_SCAN (less the id, which
/// the runner assigns) and what the scan is for (capture header, ICD §7).
public struct ScanPlan: Sendable, Equatable {
    public var mode: ScanMode
    public var xUm: Int32
    public var yStartUm: Int32
    public var lineCount: UInt32
    public var lineStepUm: Int32
    public var linePeriodUs: UInt32
    public var tubeCurrentUA: UInt32
    public var linesPerFrame: UInt16
    public var role: CaptureScan.Role
    public var region: CaptureScan.Region?
    public var phantom: Phantom?
    /// For a patient scan: written into its capture's header (sex and birth date, for scores).
    public var patient: CapturePatient?

    public init(mode: ScanMode, xUm: Int32, yStartUm: Int32, lineCount: UInt32, lineStepUm: Int32, linePeriodUs: UInt32,
                tubeCurrentUA: UInt32, linesPerFrame: UInt16, role: CaptureScan.Role, region: CaptureScan.Region? = nil,
                phantom: Phantom? = nil) {
        self.mode = mode; self.xUm = xUm; self.yStartUm = yStartUm; self.lineCount = lineCount
        self.lineStepUm = lineStepUm; self.linePeriodUs = linePeriodUs; self.tubeCurrentUA = tubeCurrentUA
        self.linesPerFrame = linesPerFrame; self.role = role; self.region = region; self.phantom = phantom
    }

    /// A dark and an air scan in the air zone (ICD §6), the references every measurement
    /// needs: 50 lines each of 10 ms, the air scan at 1 mA.
    public static func references(xUm: Int32, info: DeviceInfo, region: CaptureScan.Region? = nil) -> [ScanPlan] {
        let airY = Int32(clamping: Int(info.airZoneYUm) + 10_000)
        return [
            ScanPlan(mode: .dark, xUm: xUm, yStartUm: airY, lineCount: 50, lineStepUm: 1000, linePeriodUs: 10_000, tubeCurrentUA: 0,
                     linesPerFrame: 16, role: .dark, region: region),
            ScanPlan(mode: .dual, xUm: xUm, yStartUm: airY, lineCount: 50, lineStepUm: 1000, linePeriodUs: 10_000, tubeCurrentUA: 1000,
                     linesPerFrame: 16, role: .air, region: region),
        ]
    }

    /// A second air scan at a quarter of the first's current, for the calibration: the
    /// detector's rate loss is measured from the two (`CountRate`). Twice the lines over the
    /// same 50 mm of the air zone as the first.
    public static func lowRateAir(xUm: Int32, info: DeviceInfo) -> ScanPlan {
        ScanPlan(mode: .dual, xUm: xUm, yStartUm: Int32(clamping: Int(info.airZoneYUm) + 10_000), lineCount: 100, lineStepUm: 500,
                 linePeriodUs: 10_000, tubeCurrentUA: 250, linesPerFrame: 16, role: .air)
    }

    public func configuration(id: UInt32) -> ScanConfiguration {
        ScanConfiguration(scanID: id, mode: mode, xUm: xUm, yStartUm: yStartUm, lineCount: lineCount,
                          lineStepUm: lineStepUm, linePeriodUs: linePeriodUs, tubeCurrentUA: tubeCurrentUA,
                          linesPerFrame: linesPerFrame)
    }
}

/// How a scan ended, with the figures a technologist and a service engineer need.
public struct ScanOutcome: Sendable, Equatable, Codable {
    public enum Result: String, Sendable, Codable {
        case completed
        /// The device aborted it (host request, interlock, watchdog, fault, XRAY_OFF).
        case aborted
        /// The link to the device was lost: the device's watchdog ends the exposure.
        case interrupted
    }
    public var scanID: UInt32
    public var mode: ScanMode
    public var result: Result
    public var reason: String?
    public var plannedLines: UInt32
    public var lines: Int
    /// Lines the device says it sent (SCAN_COMPLETE / SCAN_ABORTED).
    public var linesReported: UInt32?
    public var gaps: Int
    public var missingFrames: UInt64
    /// Lines whose index never arrived (found from the line numbers, so a loss at the very
    /// start of a session, where the data seq has no predecessor, is still seen).
    public var missingLines: Int
    public var outOfOrderLines: Int
    /// X-ray exposure time: as the device reported it (SCAN_COMPLETE), or estimated by the
    /// host when the device reports none (an aborted or interrupted scan): see `doseEstimated`.
    public var exposureMs: UInt32
    /// Dose-area product, reported or estimated like `exposureMs`.
    public var dapMGyCm2: Double
    /// True when `exposureMs` and `dapMGyCm2` are the host's estimate (ICD §5: SCAN_ABORTED
    /// carries no exposure), not the device's figures.
    public var doseEstimated: Bool = false
    public var capture: String?
    /// The device reported X-rays off after the scan (GET_STATUS).
    public var xrayOffVerified: Bool
    /// Device time between the first and the last line (µs), for cadence checks.
    public var deviceSpanUs: UInt64
    /// The longest time between two frames the host wrote to the device from START_SCAN to
    /// the end of the scan (ICD §4: at most 250 ms), on the host's clock.
    public var longestHostGapMs: Double = 0

    /// A scan that an abort kept from starting: nothing exposed.
    public static func notStarted(_ plan: ScanPlan, id: UInt32, reason: String = "aborted by host before the scan started") -> ScanOutcome {
        ScanOutcome(scanID: id, mode: plan.mode, result: .aborted, reason: reason,
                    plannedLines: plan.lineCount, lines: 0, linesReported: nil, gaps: 0, missingFrames: 0, missingLines: 0,
                    outOfOrderLines: 0, exposureMs: 0, dapMGyCm2: 0, capture: nil, xrayOffVerified: true, deviceSpanUs: 0)
    }

    public var summary: String {
        var s = "scan \(scanID) \(result.rawValue)"
        if let reason { s += ": \(reason)" }
        s += "; \(lines) of \(plannedLines) lines"
        return s
    }
}

/// Progress of a running scan.
public struct ScanProgress: Sendable, Equatable, Codable {
    public var scanID: UInt32
    public var lines: Int
    public var plannedLines: UInt32
    public var gaps: Int
    /// Lines per second of device time, over the scan so far.
    public var linesPerSecond: Double
    public var etaSeconds: Double
}

/// Why a scan could not be run or did not complete.
public enum ScanError: Error, Sendable, CustomStringConvertible {
    case busy(UInt32)
    case deviceNotReady(DeviceState, String)
    case interlockOpen([String])
    case rejected(String)
    /// The capture cannot be written (no room on its disk, a directory that cannot be made):
    /// refused before anything was sent to the device.
    case storage(String)
    case ended(ScanOutcome)

    public var description: String {
        switch self {
        case .busy(let id): id == 0 ? "a calibration or scan sequence is running" : "scan \(id) is already running"
        case let .deviceNotReady(s, detail): "the DX-1 is \(s), not IDLE\(detail.isEmpty ? "" : ": \(detail)")"
        case .interlockOpen(let open): "interlock open: \(open.joined(separator: ", ")); close it and try again"
        case .rejected(let why): why
        case .storage(let why): "\(why); the scan was not started"
        case .ended(let o): o.summary
        }
    }

    public var outcome: ScanOutcome? {
        if case .ended(let o) = self { return o }
        return nil
    }
}

/// Runs one scan on a device session: configure, start, collect every line with the
/// heartbeat going, and end with X-rays verified off whatever happens — including
/// cancellation of the calling task (a client that went away, a daemon shutting down).
public actor ScanRunner {
    public let session: DeviceSession
    private let clock: any Clock<Duration>
    private let logger: Logger
    private let recorder: RecordingTransport?
    private let captureDirectory: String?
    private var current: UInt32?
    /// Held for a whole run or sequence, taken before the first `await` so that two callers
    /// cannot both pass the check, and so that no other scan slips in between a sequence's scans.
    private var claimed = false
    /// `abort()` came while a run or sequence held the runner: no further scan of it starts,
    /// even one whose turn comes after the abort (between two scans of a sequence).
    private var abortRequested = false
    private var nextID: UInt32
    /// The capture being written (its path), while a run or sequence holds the runner: a
    /// capture failure's report is acted on only for it, never for a later scan's.
    private var activeCapture: String?
    /// The running scan was already stopped for its capture's failure.
    private var stoppedForCapture = false
    /// Dose per exposure, learnt from the unit's own SCAN_COMPLETE figures, to estimate the
    /// dose of scans the device reports none for.
    private var doseRate: DoseRate
    /// Told of every scan's outcome, whoever ran it (metrics, audit).
    private let onOutcome: (@Sendable (ScanOutcome) -> Void)?

    /// `nominalDAPPerMAs` is the unit's dose-area product per mA·s from its documents, used
    /// until a completed scan has given the unit's own figure (nil: unknown until then).
    public init(session: DeviceSession, clock: any Clock<Duration>, recorder: RecordingTransport? = nil,
                captureDirectory: String? = nil, nominalDAPPerMAs: Double? = nil, logger: Logger = Logger(label: "dexa.scan"),
                onOutcome: (@Sendable (ScanOutcome) -> Void)? = nil) {
        self.session = session
        self.clock = clock
        self.recorder = recorder
        self.captureDirectory = captureDirectory
        self.logger = logger
        self.doseRate = DoseRate(nominalDAPPerMAs: nominalDAPPerMAs)
        self.onOutcome = onOutcome
        // Scan ids only need to differ between scans of one device session, but they also name
        // captures and stored attempts across daemon runs, and a daemon restarted within a
        // second once took the ids (and capture names) of the run before: start at random.
        nextID = UInt32.random(in: 1...(UInt32.max / 2))
    }

    public var runningScan: UInt32? { current }

    /// What the runner hands on as lines arrive: the index of the scan in its sequence and
    /// the lines (for the live decomposition). Called on the runner; must not block.
    public typealias LineSink = @Sendable (_ scan: Int, _ lines: [ScanLine]) -> Void

    public func run(_ plan: ScanPlan, progress: (@Sendable (ScanProgress) -> Void)? = nil) async throws -> ScanOutcome {
        try claim()
        defer { claimed = false }
        let id = allocateID()
        guard let info = await session.info else { throw DeviceError.notConnected }
        let writer = try openCapture(scans: [(id, plan)], phantom: plan.phantom, info: info)
        defer {
            recorder?.onCaptureFailure(nil)
            recorder?.detach()
            writer?.close()
            activeCapture = nil
        }
        return try await runOne(plan, id: id, capture: writer, progress: progress, index: 0, onLines: nil)
    }

    /// Several scans into one capture (a calibration: dark, air, phantom), in order; stops at
    /// the first that does not complete.
    /// `onCapture` hears, before the first scan starts, which capture file the sequence goes
    /// into and the scan ids it was given (so a caller can record them before anything is
    /// exposed).
    public func runSequence(_ plans: [ScanPlan], phantom: Phantom?, progress: (@Sendable (ScanProgress) -> Void)? = nil,
                            onLines: LineSink? = nil, onCapture: (@Sendable (_ path: String?, _ scanIDs: [UInt32]) -> Void)? = nil,
                            onOutcome scanEnded: (@Sendable (ScanOutcome) -> Void)? = nil)
        async throws -> (outcomes: [ScanOutcome], capture: String?) {
        try claim()
        defer { claimed = false }
        guard let info = await session.info else { throw DeviceError.notConnected }
        // Every scan's parameters against the device's limits before the first exposes: a
        // sequence is never refused half-way, after its first scans gave their dose.
        for plan in plans {
            if let why = plan.configuration(id: 1).violation(for: info) { throw ScanError.rejected("scan parameters rejected: \(why)") }
        }
        let ids = plans.map { _ in allocateID() }
        let writer = try openCapture(scans: Array(zip(ids, plans)), phantom: phantom, info: info)
        defer {
            recorder?.onCaptureFailure(nil)
            recorder?.detach()
            writer?.close()
            activeCapture = nil
        }
        onCapture?(writer?.path, ids)
        var outcomes: [ScanOutcome] = []
        for (index, (id, plan)) in zip(ids, plans).enumerated() {
            do {
                let o = try await runOne(plan, id: id, capture: writer, progress: progress, index: index, onLines: onLines)
                scanEnded?(o)
                outcomes.append(o)
            } catch let e as ScanError {
                if let o = e.outcome { scanEnded?(o) }
                throw e
            }
        }
        return (outcomes, writer?.path)
    }

    /// Takes the runner for one run or sequence, synchronously (no `await` before it).
    private func claim() throws(ScanError) {
        if let current { throw ScanError.busy(current) }
        if claimed { throw ScanError.busy(0) }
        claimed = true
        abortRequested = false
    }

    private func notStarted(_ plan: ScanPlan, id: UInt32) -> ScanOutcome { .notStarted(plan, id: id) }

    private func allocateID() -> UInt32 {
        let id = nextID
        nextID = nextID &+ 1 == 0 ? 1 : nextID &+ 1
        return id
    }

    private func runOne(_ plan: ScanPlan, id: UInt32, capture writer: CaptureWriter?,
                        progress: (@Sendable (ScanProgress) -> Void)?, index: Int, onLines: LineSink?) async throws -> ScanOutcome {
        if let current { throw ScanError.busy(current) }
        if abortRequested { throw ScanError.ended(notStarted(plan, id: id)) }
        let status = try await session.refreshStatus()
        switch status.state {
        case .idle: break
        case .safe: throw ScanError.interlockOpen(status.interlocks.open)
        case .fault: throw ScanError.deviceNotReady(.fault, "fault \(status.fault.rawValue) (\(status.fault)); clear it first")
        default: throw ScanError.deviceNotReady(status.state, "")
        }
        guard let info = await session.info else { throw DeviceError.notConnected }
        let config = plan.configuration(id: id)
        if let why = config.violation(for: info) { throw ScanError.rejected("scan parameters rejected: \(why)") }
        // The sequence's capture failed during an earlier scan of it: nothing more goes in.
        if let why = recorder?.captureFailure { throw ScanError.storage("the capture could not be written (\(why))") }
        current = id
        stoppedForCapture = false
        defer { current = nil }

        let feed = await session.openScanFeed(id: id)
        let watch = Stopwatch(any: clock)
        var startSentAt: Duration?
        do {
            _ = try await session.execute(.configureScan(config))
            // Aborted while the scan was being configured: the catch below takes READY back to IDLE.
            if abortRequested { throw ScanError.ended(notStarted(plan, id: id)) }
            // The heartbeat belongs to the scan from here until the device has said it is
            // over; no event stops it (events may come before or after their responses).
            await session.beginSendGapWindow()
            await session.startHeartbeat()
            startSentAt = watch.elapsed
            _ = try await session.execute(.startScan(scanID: id))
        } catch {
            // START_SCAN may have reached the device with its answer lost (a timeout, a
            // cancelled caller): stop the scan, keep the heartbeat until that is done.
            await safeStop(id)
            let refused: Bool = if case DeviceError.refused = error { true } else { false }
            guard let sentAt = startSentAt, !refused, plan.mode != .dark else {
                await session.stopHeartbeat()
                await session.closeScanFeed(id: id)
                throw error
            }
            // It may have exposed: account for it as an interrupted scan, X-rays read back off.
            var o = ScanOutcome.notStarted(plan, id: id, reason: "START_SCAN got no answer (\(error)); the scan was stopped")
            o.result = .interrupted
            o.capture = writer?.path
            estimateDose(&o, plan: plan, exposed: watch.elapsed - sentAt, upperBound: true)
            o.xrayOffVerified = await verifyXrayOff()
            await session.stopHeartbeat()
            await session.closeScanFeed(id: id)
            onOutcome?(o)
            throw ScanError.ended(o)
        }
        let xrayOnAt = watch.elapsed
        // The device says when the scan is over; an end event can still be lost (a damaged
        // frame, a full feed). Past the planned time and a margin, ask the device itself.
        let planned = Duration.microseconds(Int64(plan.linePeriodUs) * Int64(plan.lineCount))
        let endWatch = Task { [session, clock] in
            do { try await clock.sleep(for: planned + max(.seconds(2), planned / 10)) } catch { return }
            while !Task.isCancelled {
                if let s = try? await session.refreshStatus(), s.activeScanID != id || ![.scanning, .ready].contains(s.state) {
                    // The end event may only be late (ICD §5 allows it; a busy host reads it
                    // late): give it 2 s of device time and of real time before calling it lost.
                    do {
                        try await clock.sleep(for: .seconds(2))
                        try await ContinuousClock().sleep(for: .seconds(2))
                    } catch { return }
                    await session.endLost(id: id, "the device is \(s.state) and no longer runs the scan, but its end event never arrived")
                    return
                }
                do { try await clock.sleep(for: .milliseconds(500)) } catch { return }
            }
        }
        defer { endWatch.cancel() }
        logger.info("scan started", metadata: ["scan": "\(id)", "mode": "\(plan.mode)", "lines": "\(plan.lineCount)"])

        var outcome = ScanOutcome(
            scanID: id, mode: plan.mode, result: .interrupted, reason: nil, plannedLines: plan.lineCount, lines: 0,
            linesReported: nil, gaps: 0, missingFrames: 0, missingLines: 0, outOfOrderLines: 0, exposureMs: 0, dapMGyCm2: 0,
            capture: writer?.path, xrayOffVerified: false, deviceSpanUs: 0)
        var nextLine: UInt32 = 0
        var firstT: UInt64?
        var lastT: UInt64 = 0
        var lastProgress = Duration.zero
        var ended = false
        var seqGapPending = false
        var endedAt: Duration?
        var cause = EndCause()
        let grace = max(Duration.seconds(1), Duration.microseconds(Int64(plan.linePeriodUs)) * 10)
        let lpf = Int(max(1, plan.linesPerFrame))

        for await item in feed {
            // The capture stopped taking records (a full disk): what is not on disk cannot be
            // re-analysed or audited, so the scan is stopped (`captureFailed`, told by the
            // recorder at the failed write), and the lines that arrive from now on are neither
            // counted nor handed on. The recorder fails a chunk before its lines reach this
            // loop, so every line counted is in the capture.
            if cause.storage == nil, let why = recorder?.captureFailure {
                cause.storage = why
                logger.error("capture failed: the scan is stopped", metadata: ["scan": "\(id)", "error": "\(why)"])
                // Stopped already if the recorder's report came first; if not, here.
                if let path = activeCapture { await captureFailed(path) }
            }
            switch item {
            case .lines(let frame):
                if cause.storage != nil { continue }
                for l in frame.lines {
                    if l.index > nextLine {
                        let lost = Int(l.index - nextLine)
                        outcome.missingLines += lost
                        if !seqGapPending {
                            // No data seq told of this loss (the first frames of a session have no
                            // predecessor): the frames it took follow from the line numbers.
                            outcome.gaps += 1
                            outcome.missingFrames += UInt64((lost + lpf - 1) / lpf)
                        }
                    } else if l.index < nextLine {
                        outcome.outOfOrderLines += 1
                    }
                    seqGapPending = false
                    nextLine = l.index &+ 1
                    if firstT == nil { firstT = l.tUs }
                    lastT = l.tUs
                }
                outcome.lines += frame.lines.count
                onLines?(index, frame.lines)
                let now = watch.elapsed
                if let progress, now - lastProgress >= .milliseconds(100) || outcome.lines >= Int(plan.lineCount) {
                    lastProgress = now
                    let span = Double(lastT - (firstT ?? lastT)) / 1e6
                    let rate = span > 0 ? Double(outcome.lines - 1) / span : 0
                    let left = Double(Int(plan.lineCount) - outcome.lines)
                    progress(ScanProgress(scanID: id, lines: outcome.lines, plannedLines: plan.lineCount, gaps: outcome.gaps,
                                          linesPerSecond: rate, etaSeconds: rate > 0 ? left / rate : 0))
                }
                if let reported = outcome.linesReported, outcome.lines >= Int(reported) {
                    await session.closeScanFeed(id: id)
                }
            case .gap(let missing):
                outcome.gaps += 1
                seqGapPending = true
                outcome.missingFrames += missing
            case .started:
                break
            case let .completed(lines, exposureMs, dap):
                ended = true
                endedAt = endedAt ?? watch.elapsed
                outcome.result = .completed
                outcome.linesReported = lines
                outcome.exposureMs = exposureMs
                outcome.dapMGyCm2 = Double(dap) / 1000
                await finishFeed(id: id, when: outcome.lines >= Int(lines), grace: grace)
            case let .aborted(reason, sent):
                ended = true
                endedAt = endedAt ?? watch.elapsed
                outcome.result = .aborted
                outcome.linesReported = sent
                cause.abort = reason
                if reason == .interlock, let open = await session.interlocks?.open, !open.isEmpty { cause.openInterlocks = open }
                await finishFeed(id: id, when: outcome.lines >= Int(sent), grace: grace)
            case .interlocks(let i):
                if i != .allClosed {
                    cause.openInterlocks = i.open
                    logger.warning("interlock opened during scan", metadata: ["scan": "\(id)", "open": "\(i.open)"])
                }
            case let .fault(code, message):
                cause.fault = "fault \(code.rawValue) (\(code)): \(message)"
            case .watchdogExpired:
                cause.watchdog = true
            case .linkLost, .endLost:
                // After SCAN_COMPLETE (waiting for the last data) the scan stays completed.
                if !ended {
                    outcome.result = .interrupted
                    if case .linkLost(let why) = item { cause.linkLost = why }
                    if case .endLost(let why) = item { cause.endLost = why }
                }
                ended = true
                endedAt = endedAt ?? watch.elapsed
                await session.closeScanFeed(id: id)
            }
        }
        outcome.longestHostGapMs = await session.sendGapWindow().milliseconds
        await session.closeScanFeed(id: id)
        if !ended {
            // The feed ended without an end event: this task was cancelled.
            outcome.result = .aborted
            cause.abort = .host
            cause.cancelled = true
            await safeStop(id)
            endedAt = watch.elapsed
        }
        if (cause.abort == .interlock && (cause.openInterlocks ?? []).isEmpty) || (cause.abort == .fault && cause.fault == nil),
           let status = try? await session.refreshStatus() {
            // The event that names the cause may still be on its way (ICD §5: any order): the
            // device's status names it now.
            if cause.abort == .interlock { cause.openInterlocks = status.interlocks.open }
            if cause.abort == .fault, status.fault != .none { cause.fault = "fault \(status.fault.rawValue) (\(status.fault))" }
        }
        outcome.reason = cause.description(result: outcome.result)
        // Lines the unit sent after the capture failed are not counted (not on disk): not lost
        // on the link either, so they are not called missing.
        if cause.storage == nil, let reported = outcome.linesReported, Int(reported) > Int(nextLine) {
            // Lines lost after the last one that arrived (the seq cannot tell: no frame follows).
            let lost = Int(reported) - Int(nextLine)
            outcome.missingLines += lost
            if !seqGapPending {
                outcome.gaps += 1
                outcome.missingFrames += UInt64((lost + lpf - 1) / lpf)
            }
        }
        outcome.deviceSpanUs = firstT.map { lastT - $0 } ?? 0
        if outcome.result == .completed {
            if plan.mode != .dark { doseRate.learn(exposureMs: outcome.exposureMs, dapMGyCm2: outcome.dapMGyCm2, currentUA: plan.tubeCurrentUA) }
        } else if plan.mode != .dark {
            // After a lost link the device's watchdog ends the exposure at the latest watchdog_ms
            // after the host's last frame; a cancelled caller's scan ended when XRAY_OFF was
            // answered. Both are upper bounds, as a dose record should err.
            let exposed = (endedAt ?? watch.elapsed) - xrayOnAt
                + (cause.linkLost != nil ? .milliseconds(Int64(info.watchdogMs)) : .zero)
            estimateDose(&outcome, plan: plan, exposed: exposed, upperBound: cause.linkLost != nil || cause.cancelled)
        }
        if cause.storage != nil, outcome.result == .completed {
            // The device finished before the stop reached it: the scan is still not whole on disk.
            outcome.result = .aborted
        }
        outcome.reason = cause.description(result: outcome.result)
        writer?.sync()
        outcome.xrayOffVerified = await verifyXrayOff()
        // Only now, with the device's word that the scan is over and X-rays off, may the
        // host fall silent.
        await session.stopHeartbeat()
        logger.info("scan ended", metadata: ["scan": "\(id)", "result": "\(outcome.result)", "lines": "\(outcome.lines)"])
        onOutcome?(outcome)
        if outcome.result != .completed { throw ScanError.ended(outcome) }
        return outcome
    }

    /// The exposure and dose of a scan the device reported none for (ICD §5: SCAN_ABORTED
    /// has no exposure; a lost link has no event at all). X-rays came on with START_SCAN's
    /// answer and went off by the time the end reached the host: that interval (`exposed`),
    /// at least the lines the device says it sent and, when it said so (SCAN_ABORTED), at
    /// most those lines plus the frame it was filling. `upperBound`: the interval already
    /// errs high (a lost link plus the watchdog, a cancelled caller until XRAY_OFF's answer).
    private func estimateDose(_ o: inout ScanOutcome, plan: ScanPlan, exposed: Duration, upperBound: Bool) {
        let period = Double(plan.linePeriodUs) / 1000
        let planned = period * Double(plan.lineCount)
        let sent = Double(o.linesReported.map(Int.init) ?? o.lines + o.missingLines)
        var ms = max(exposed.milliseconds, sent * period)
        // The device's own count of lines bounds it from above too, unless the host cannot
        // know when X-rays went off (lines still in flight, a lost link): then the interval stands.
        if !upperBound && o.linesReported != nil { ms = min(ms, (sent + Double(plan.linesPerFrame)) * period) }
        ms = min(max(ms, 0), planned)
        o.exposureMs = UInt32(ms.rounded())
        o.dapMGyCm2 = doseRate.dap(exposureMs: ms, currentUA: plan.tubeCurrentUA) ?? 0
        o.doseEstimated = true
    }

    /// Stops what the runner is doing (another client's `scan.abort`, an exam's abort, a
    /// movement): the running scan is aborted on the device, and no further scan of the run
    /// or sequence starts. Returns the scan aborted, 0 when the abort came between two scans,
    /// nil when nothing was running.
    public func abort() async throws -> UInt32? {
        guard claimed || current != nil else { return nil }
        abortRequested = true
        guard let id = current else { return 0 }
        await safeStop(id)
        return id
    }

    /// The capture at `path` stopped taking records: stop the running scan (once), and every
    /// later scan of its sequence (they would go into the same capture). A report that comes
    /// after its run ended (another capture is active, or none) is ignored.
    private func captureFailed(_ path: String) async {
        guard activeCapture == path else { return }
        abortRequested = true
        guard let id = current, !stoppedForCapture else { return }
        stoppedForCapture = true
        await safeStop(id)
    }

    private func finishFeed(id: UInt32, when complete: Bool, grace: Duration) async {
        if complete {
            await session.closeScanFeed(id: id)
            return
        }
        // Events and data travel on different endpoints: give the data in flight time to land.
        Task { [session, clock] in
            try? await clock.sleep(for: grace)
            await session.closeScanFeed(id: id)
        }
    }

    /// ABORT_SCAN then XRAY_OFF, in a task of its own so that a cancelled caller cannot
    /// stop them from going out.
    private func safeStop(_ id: UInt32) async {
        let session = self.session
        let logger = self.logger
        await Task {
            do { _ = try await session.send(.abortScan(scanID: id), timeout: .milliseconds(500)) } catch {
                logger.warning("ABORT_SCAN failed", metadata: ["error": "\(error)"])
            }
            do { try await session.xrayOff() } catch {
                logger.error("XRAY_OFF failed", metadata: ["error": "\(error)"])
            }
        }.value
    }

    private func verifyXrayOff() async -> Bool {
        let session = self.session
        return await Task {
            if let s = try? await session.refreshStatus(), !s.xrayOn { return true }
            try? await session.xrayOff()
            return (try? await session.refreshStatus().xrayOn == false) ?? false
        }.value
    }

    /// Room a capture of these scans needs on its disk: every line's samples and header, a
    /// frame header per frame, the command and event traffic, a tenth more for the records'
    /// own headers; plus `reserve` for the exam database and the decomposed scan beside it.
    static func captureBytesNeeded(_ scans: [ScanPlan], channels: Int) -> Int64 {
        var bytes = 0.0
        for p in scans {
            let frames = (Double(p.lineCount) / Double(max(1, p.linesPerFrame))).rounded(.up)
            bytes += Double(p.lineCount) * Double(ScanLine.size(channels: channels)) + frames * 64
        }
        return Int64(bytes * 1.1) + 1 << 20 + reserveBytes
    }

    /// Left free beside a capture: the exam database's next writes and the decomposed scan.
    static let reserveBytes: Int64 = 16 << 20

    /// Refuses (before anything moves or exposes) scans whose captures and the reserve do not
    /// fit on the capture disk. A caller with several sequences to run (an exam step: scout,
    /// then the site) asks for all of them at once, before the first.
    public func checkRoom(for plans: [ScanPlan], channels: Int) throws(ScanError) {
        guard let dir = captureDirectory, recorder != nil else { return }
        let needed = Self.captureBytesNeeded(plans, channels: channels)
        var fs = statvfs()
        // The directory may not exist yet: its disk is its parent's.
        var probe = dir
        while statvfs(probe, &fs) != 0 {
            let parent = (probe as NSString).deletingLastPathComponent
            if parent == probe || parent.isEmpty { return }
            probe = parent
        }
        let free = Int64(fs.f_bavail) * Int64(fs.f_frsize)
        if free < needed {
            logger.error("no room for the capture", metadata: ["path": "\(dir)", "free": "\(free)", "needed": "\(needed)"])
            let mb = { (b: Int64) in String(format: "%.1f MB", Double(b) / 1e6) }
            throw .storage("the capture disk is full: \(mb(free)) free in \(dir), the scan needs \(mb(needed)) (its capture and \(Self.reserveBytes >> 20) MB in reserve); free space and try again")
        }
    }

    private func openCapture(scans: [(UInt32, ScanPlan)], phantom: Phantom?, info: DeviceInfo) throws(ScanError) -> CaptureWriter? {
        guard let dir = captureDirectory, let recorder, let (id, plan) = scans.last else { return nil }
        let stamp = Date().formatted(.iso8601).replacingOccurrences(of: ":", with: "")
        var path = "\(dir)/\(stamp)-scan\(id)-\(plan.role.rawValue).dxcap"
        // Never write over a capture: a name taken gets a suffix.
        for n in 2..<100 where FileManager.default.fileExists(atPath: path) {
            path = "\(dir)/\(stamp)-scan\(id)-\(plan.role.rawValue)-\(n).dxcap"
        }
        let header = CaptureHeader(device: info, scans: scans.map { CaptureScan(scanID: $0.0, role: $0.1.role, region: $0.1.region) },
                                   phantom: phantom, patient: scans.compactMap(\.1.patient).last)
        // Raw data goes to disk as it arrives, or not at all: a scan whose capture cannot be
        // written is refused before anything moves or exposes (docs/RELIABILITY.md, "Disk and
        // database faults").
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            logger.error("cannot make the capture directory", metadata: ["path": "\(dir)", "error": "\(error)"])
            throw .storage("cannot make the capture directory \(dir): \(error.localizedDescription)")
        }
        try checkRoom(for: scans.map(\.1), channels: Int(info.channels))
        do {
            let w = try CaptureWriter(path: path, header: header, clock: ContinuousClock())
            // A failed write stops the running scan at once (the loop in runOne then says why);
            // the handler is in place before the first record can fail.
            activeCapture = path
            recorder.onCaptureFailure { [weak self, path] _ in Task { await self?.captureFailed(path) } }
            recorder.attach(w)
            return w
        } catch {
            logger.error("cannot record capture", metadata: ["path": "\(path)", "error": "\(error)"])
            throw .storage("cannot write the capture \(path): \(error)")
        }
    }
}

extension ScanRunner {
    /// Returns as soon as the actor runs it: a liveness probe for the service watchdog.
    public func liveness() {}
}

/// Why a scan ended early, gathered from events that may arrive in any order, and said in
/// one sentence per cause whatever that order was.
struct EndCause {
    var abort: AbortReason?
    var fault: String?
    var watchdog = false
    var openInterlocks: [String]?
    var linkLost: String?
    var endLost: String?
    /// The caller went away (its task was cancelled) and the runner stopped the scan.
    var cancelled = false
    /// The capture could not be written (a full disk): the runner stopped the scan.
    var storage: String?

    func description(result: ScanOutcome.Result) -> String? {
        if let storage, result != .completed {
            return "the capture could not be written (\(storage)): the scan was stopped with X-rays off; the lines before it are in the capture"
        }
        if let linkLost, result == .interrupted { return "link lost: \(linkLost)" }
        if let endLost, result == .interrupted { return endLost }
        if result == .completed { return nil }
        switch abort {
        case .watchdog?: return "device watchdog expired"
        case .fault?: return fault ?? "device fault"
        case .interlock?:
            guard let open = openInterlocks, !open.isEmpty else { return "interlock opened" }
            return "interlock opened (open: \(open.joined(separator: ", ")))"
        case .host?: return "aborted by host"
        case .xrayOff?: return "X-rays turned off (XRAY_OFF)"
        case let other?: return other.description
        case nil:
            if watchdog { return "device watchdog expired" }
            return fault
        }
    }
}

/// Dose-area product per mA·s of exposure: the unit's own figure from its SCAN_COMPLETE
/// events (dap / (current × exposure)), else the nominal one from the configuration.
struct DoseRate {
    var nominalDAPPerMAs: Double?
    var learnt: Double?

    mutating func learn(exposureMs: UInt32, dapMGyCm2: Double, currentUA: UInt32) {
        let mAs = Double(currentUA) / 1000 * Double(exposureMs) / 1000
        guard mAs > 0.01, dapMGyCm2 > 0 else { return }
        learnt = dapMGyCm2 / mAs
    }

    func dap(exposureMs: Double, currentUA: UInt32) -> Double? {
        guard let rate = learnt ?? nominalDAPPerMAs else { return nil }
        return rate * Double(currentUA) / 1000 * exposureMs / 1000
    }
}
