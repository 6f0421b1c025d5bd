import DXAcquisition
import DXControl
import DXDecomposition
import DXDevice
import DXProtocol
import Foundation
import Logging

/// The daemon's answers to control-socket methods (docs/control-protocol.md).
public struct DaemonControlHandler: ControlHandler {
    let device: DeviceService
    let exams: ExamSequencer
    let deviceName: String
    let audit: AuditLog
    let configuration: DaemonConfiguration
    let logger: Logger

    public init(device: DeviceService, exams: ExamSequencer, deviceName: String, audit: AuditLog, configuration: DaemonConfiguration, logger: Logger) {
        self.device = device
        self.exams = exams
        self.deviceName = deviceName
        self.audit = audit
        self.configuration = configuration
        self.logger = logger
    }

    public func handle(_ request: RPCRequest, context: ControlContext) async throws -> JSONValue {
        guard let method = ControlMethod(rawValue: request.method) else { throw RPCError.methodNotFound(request.method) }
        let needed = AccessPolicy.requiredRole(method)
        guard context.role >= needed else {
            let why = "permission denied: \(method.rawValue) needs the \(configuration.serviceGroup) group"
            audit.record(peer: context.peer, role: context.role, method: method.rawValue, decision: "refused", detail: why)
            throw RPCError(code: RPCError.forbiddenCode, message: why)
        }
        if AccessPolicy.canExpose(method) {
            audit.record(peer: context.peer, role: context.role, method: method.rawValue, decision: "allowed", params: request.params)
        }
        do {
            return try await dispatch(method, request.params, context)
        } catch let e as RPCError {
            throw e
        } catch let e as DeviceError {
            throw Self.rpcError(e)
        } catch let e as ScanError {
            throw Self.rpcError(e)
        } catch is CancellationError {
            throw RPCError(code: RPCError.deviceErrorCode, message: "request cancelled")
        }
    }

    private func dispatch(_ method: ControlMethod, _ params: JSONValue?, _ context: ControlContext) async throws -> JSONValue {
        let session = device.session
        if method.rawValue.hasPrefix("exam.") { return try await ExamMethods(exams: exams).handle(method, params, context) }
        switch method {
        case .deviceInfo:
            guard let info = await session.info, await session.connected else { throw DeviceError.notConnected }
            return .object(["device": try JSONValue(encoding: info), "transport": .string(deviceName), "connected": .bool(true)])
        case .deviceStatus:
            let s = try await session.refreshStatus()
            return try Self.statusJSON(s, counters: await session.counters)
        case .deviceHome:
            return try await move(.home)
        case .deviceMove:
            let p: MoveParams = try Self.params(params)
            return try await move(.move(xUm: p.xUm, yUm: p.yUm, armAngle: p.armAngle ?? 0))
        case .scanRun:
            let p: ScanRunParams = try Self.params(params ?? .object([:]))
            let plan = try await plan(from: p)
            let progress: @Sendable (ScanProgress) -> Void = { progress in
                let notice = ScanProgressNotice(scanID: progress.scanID, lines: progress.lines, plannedLines: progress.plannedLines,
                                                gaps: progress.gaps, linesPerSecond: progress.linesPerSecond, etaSeconds: progress.etaSeconds)
                if let v = try? JSONValue(encoding: notice) { context.notify("scan.progress", v) }
            }
            // A patient is only measured with a valid calibration, and always with references.
            var calibration: Calibration?
            switch CalibrationStore(stateDirectory: configuration.stateDirectory).load() {
            case .success(let c): calibration = c
            case .failure(let problem): if plan.role == .patient { throw problem.rpcError }
            }
            if p.withReferences == true || plan.role == .patient {
                return try await runWithReferences(plan, calibration: calibration, progress: progress)
            }
            let outcome = try await device.run(plan, progress: progress)
            return try JSONValue(encoding: Self.report(outcome))
        case .scanAbort:
            let id = try await device.runner.abort()
            return .object(["aborted": id.map { .number(Double($0)) } ?? .null])
        case .eventsSubscribe:
            let notices = await session.notices()
            context.keepStreaming {
                for await n in notices {
                    context.notify("event", Self.noticeJSON(n))
                }
            }
            return .object(["subscribed": .bool(true)])
        case .serviceSelftest:
            let r = try SelfTestReport(decoding: await session.execute(.selfTest, timeout: .seconds(10)))
            return .object(["items": .array(r.items.map { i in
                .object(["component": .string(i.component.description), "component_id": .number(Double(i.component.rawValue)),
                         "result": .string(i.result.description.lowercased()), "value": .number(Double(i.value)),
                         "code": .number(Double(i.code))])
            })])
        case .serviceSensors:
            let r = try SensorReadings(decoding: await session.execute(.readSensors))
            return .object([
                "tube_temp_c": .number(Double(r.tubeTempX10) / 10), "detector_temp_c": .number(Double(r.detectorTempX10) / 10),
                "generator_temp_c": .number(Double(r.generatorTempX10) / 10), "kv": .number(Double(r.kvX10) / 10),
                "tube_current_ua": .number(Double(r.tubeCurrentUA)), "supply_v": .number(Double(r.supplyMv) / 1000),
                "dark_mean": .number(Double(r.darkMean)), "uptime_s": .number(Double(r.uptimeS)),
                "dropped_lines": .number(Double(r.droppedLines)), "usb_errors": .number(Double(r.usbErrors)),
            ])
        case .serviceMetrics:
            let m = await device.metrics()
            if params?["format"]?.stringValue == "prometheus" { return .object(["text": .string(m.prometheus)]) }
            return try JSONValue(encoding: m)
        case .serviceReport:
            let n = params?["captures"]?.intValue ?? 5
            guard (0...100).contains(n) else { throw RPCError.invalidParams("captures must be 0 to 100") }
            return try await ServiceReport(device: device, configuration: configuration, deviceName: deviceName).build(captures: n)
        case .serviceReset:
            return try await reset()
        case .serviceCalibrate:
            return try await calibrate(params)
        case .serviceLog:
            let p: LogParams = try Self.params(params ?? .object([:]))
            let r = try LogChunk(decoding: await session.execute(.getLog(offset: p.offset ?? 0, maxBytes: p.maxBytes ?? 4096)))
            return .object(["next_offset": .number(Double(r.nextOffset)), "text": .string(r.text)])
        case .examCreate, .examChecklist, .examStart, .examNext, .examRepeat, .examSkip, .examAdd, .examAbort, .examGet, .examList:
            return try await ExamMethods(exams: exams).handle(method, params, context)
        }
    }

    /// RESET (ICD §3): the unit leaves the bus and comes back within 3 s with the same
    /// serial; the device service reconnects and re-reads GET_INFO and GET_STATUS. Returns
    /// once the unit is IDLE again.
    private func reset() async throws -> JSONValue {
        let session = device.session
        guard let before = await session.info else { throw DeviceError.notConnected }
        let notices = await session.notices()
        let started = ContinuousClock.now
        do {
            _ = try await session.execute(.reset)
        } catch DeviceError.linkLost {
            // The unit left the bus before its answer got through: that is what RESET does.
        }
        let back: DeviceInfo? = await withTaskGroup(of: DeviceInfo?.self) { group in
            group.addTask {
                var left = false
                for await n in notices {
                    if case .linkLost = n { left = true }
                    if case .connected(let info) = n, left { return info }
                }
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(10))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let back else {
            throw RPCError(code: RPCError.deviceErrorCode, message: "the DX-1 did not come back within 10 s of RESET")
        }
        guard back.serial == before.serial else {
            throw RPCError(code: RPCError.deviceErrorCode, message: "a different unit came back after RESET (\(back.serial), expected \(before.serial))")
        }
        for _ in 0..<100 {
            if let s = try? await session.refreshStatus(), s.state != .boot { break }
            try? await Task.sleep(for: .milliseconds(50))
        }
        let ms = (ContinuousClock.now - started).milliseconds
        return .object(["reconnected": .bool(true), "serial": .string(back.serial), "after_ms": .number(ms.rounded()),
                        "state": .string(await session.state?.description ?? "?")])
    }

    /// HOME or MOVE, waiting for MOTION_DONE (or the move being cut short).
    private func move(_ command: Command) async throws -> JSONValue {
        do {
            let r = try await Positioning.move(command, session: device.session, clock: device.clock)
            return .object(["x_um": .number(Double(r.xUm)), "y_um": .number(Double(r.yUm)), "arm_angle": .number(Double(r.armAngleX10))])
        } catch let e as MotionError {
            throw RPCError(code: RPCError.deviceErrorCode, message: e.description)
        }
    }

    private func plan(from p: ScanRunParams) async throws -> ScanPlan {
        guard let info = await device.session.info else { throw DeviceError.notConnected }
        let modeName = p.mode ?? "dual"
        guard let mode = ScanMode(name: modeName) else { throw RPCError.invalidParams("mode must be dark, dual or single") }
        let minPeriod = info.maxLineRateHz > 0 ? UInt32((1_000_000 + Int(info.maxLineRateHz) - 1) / Int(info.maxLineRateHz)) : 10_000
        let yStart = p.yStartUm ?? 500_000
        var role: CaptureScan.Role
        if let r = p.role {
            guard let parsed = CaptureScan.Role(rawValue: r) else {
                throw RPCError.invalidParams("role must be one of \(CaptureScan.Role.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            role = parsed
        } else {
            role = mode == .dark ? .dark : (yStart >= Int32(clamping: info.airZoneYUm) ? .air : .qc)
        }
        var region: CaptureScan.Region?
        if let r = p.region {
            guard let parsed = CaptureScan.Region(rawValue: r) else { throw RPCError.invalidParams("unknown region \(r)") }
            region = parsed
        }
        if role == .patient && region == nil { throw RPCError.invalidParams("a patient scan needs a region (ap_spine, left_hip, right_hip, lateral_spine)") }
        let phantom = try p.phantom.map { try Self.loadPhantom($0) }
        return ScanPlan(
            mode: mode, xUm: p.xUm ?? Int32(info.travelXUm / 2), yStartUm: yStart, lineCount: p.lines ?? 200,
            lineStepUm: p.lineStepUm ?? 1000, linePeriodUs: p.linePeriodUs ?? minPeriod, tubeCurrentUA: p.tubeCurrentUA ?? 1000,
            linesPerFrame: p.linesPerFrame ?? 16, role: role, region: region, phantom: phantom)
    }

    static func loadPhantom(_ path: String) throws -> Phantom {
        guard let data = FileManager.default.contents(atPath: path) else { throw RPCError.invalidParams("cannot read the phantom file \(path)") }
        do { return try JSONDecoder().decode(Phantom.self, from: data) } catch {
            throw RPCError.invalidParams("\(path) is not an ICD §8 phantom: \(error)")
        }
    }

    /// Dark and air references, then the scan, into one capture; with a calibration, the scan
    /// is decomposed live as its lines arrive and the report carries the result (`analysis`).
    private func runWithReferences(_ plan: ScanPlan, calibration: Calibration?,
                                   progress: @escaping @Sendable (ScanProgress) -> Void) async throws -> JSONValue {
        guard let info = await device.session.info else { throw DeviceError.notConnected }
        let plans = try await referencePlans(x: plan.xUm) + [plan]
        let live = calibration.map { cal in
            LiveSequenceAnalysis(calibration: cal, geometry: ScanGeometry(channels: Int(info.channels), pitchUm: Int(info.pitchUm)),
                                 rois: plan.phantom?.rois ?? [],
                                 scans: plans.map { .init(role: $0.role, configuration: $0.configuration(id: 0)) })
        }
        var sink: ScanRunner.LineSink?
        if let live { sink = { index, lines in live.lines(lines, scan: index) } }
        let (outcomes, _) = try await device.runner.runSequence(plans, phantom: plan.phantom, progress: progress, onLines: sink)
        guard let last = outcomes.last else { throw RPCError(code: RPCError.scanFailedCode, message: "no scan ran") }
        var report: [String: JSONValue] = [:]
        if case .object(let fields) = try JSONValue(encoding: Self.report(last)) { report = fields }
        switch await live?.finish() {
        case .success(let result)?:
            report["analysis"] = try JSONValue(encoding: result)
            report["calibration"] = .string(calibration?.source ?? "")
        case .failure(let e)?:
            report["analysis_error"] = .string(e.description)
        case nil:
            report["analysis_error"] = .string("no valid calibration: the scan was recorded, not decomposed")
        }
        return .object(report)
    }

    /// The references every analysis needs (`ScanPlan.references`).
    private func referencePlans(x: Int32) async throws -> [ScanPlan] {
        guard let info = await device.session.info else { throw DeviceError.notConnected }
        return ScanPlan.references(xUm: x, info: info)
    }

    /// `service.calibrate`: dark and air scans in the air zone, then the calibration phantom,
    /// into one capture; the fit is stored as the daemon's calibration, naming the capture.
    private func calibrate(_ params: JSONValue?) async throws -> JSONValue {
        guard let path = params?["phantom"]?.stringValue else { throw RPCError.invalidParams("phantom (the calibration phantom's JSON file) is required") }
        let phantom = try Self.loadPhantom(path)
        guard let cells = phantom.cells, !cells.isEmpty else { throw RPCError.invalidParams("\(path) has no cells") }
        guard let info = await device.session.info else { throw DeviceError.notConnected }
        // The one procedure (DXDecomposition): two exposures at nine carriage positions, its
        // line step unless the request names one.
        var procedure = CalibrationProcedure(phantom: phantom, travelXUm: info.travelXUm)
        if let requested = params?["line_step_um"] {
            guard let step = requested.intValue.flatMap({ Int32(exactly: $0) }), (1...100_000).contains(step) else {
                throw RPCError.invalidParams("line_step_um must be 1 to 100000")
            }
            procedure = CalibrationProcedure(phantom: phantom, travelXUm: info.travelXUm, stepUm: step)
        }
        guard let procedure,
              let firstX = procedure.passes.first?.xUm else {
            throw RPCError.invalidParams("\(path): cells without extent, or line_step_um not positive")
        }
        let plans = try await referencePlans(x: firstX) + procedure.passes.map { p in
            ScanPlan(mode: .dual, xUm: p.xUm, yStartUm: p.yStartUm, lineCount: p.lineCount, lineStepUm: p.lineStepUm, linePeriodUs: p.linePeriodUs,
                     tubeCurrentUA: p.tubeCurrentUA, linesPerFrame: p.linesPerFrame, role: .calibration)
        }
        // Every pass checked before the first exposes: none may be refused half-way.
        for plan in plans {
            if let why = plan.configuration(id: 1).violation(for: info) { throw RPCError.invalidParams("a calibration pass would be refused: \(why)") }
        }
        let (_, capture) = try await device.runner.runSequence(plans, phantom: phantom)
        guard let capture else { throw RPCError(code: RPCError.deviceErrorCode, message: "captures are disabled; a calibration needs one") }
        let contents: CaptureFormat.Contents
        do { contents = try CaptureFormat.parse(Array(try Data(contentsOf: URL(fileURLWithPath: capture)))) } catch {
            throw RPCError(code: RPCError.deviceErrorCode, message: "cannot read back \(capture): \(error)")
        }
        let scans = CaptureReader.scans(in: contents)
        do {
            let geometry = ScanGeometry(channels: Int(info.channels), pitchUm: Int(info.pitchUm))
            let calibration = try CaptureAnalysis.calibration(from: scans, phantom: phantom, geometry: geometry, source: capture)
            // The one acceptance rule (the same words as `dexa analyze`): a refused fit is not
            // stored, and the calibration in use stays.
            let verdict = calibration.verdict
            guard verdict.accepted else {
                throw RPCError(code: RPCError.deviceErrorCode, message: "\(capture): \(verdict.description); the calibration in use is unchanged")
            }
            let store = CalibrationStore(stateDirectory: configuration.stateDirectory)
            try store.save(calibration)
            let file = store.path
            return .object([
                "calibration": .string(file), "capture": .string(capture), "version": .number(Double(calibration.version)),
                "cells": .number(Double(calibration.points.count)),
                "residual_hydroxyapatite_g_cm2": .number(calibration.residualHydroxyapatite),
                "residual_soft_tissue_g_cm2": .number(calibration.residualSoftTissue),
                "residual_fat_fraction": .number(calibration.residualFatFraction),
                "noise_hydroxyapatite_g_cm2": .number(verdict.noise),
                "limit_hydroxyapatite_g_cm2": .number(verdict.limit),
            ])
        } catch let e as AnalysisError {
            throw RPCError(code: RPCError.deviceErrorCode, message: "calibration failed: \(e.description)")
        }
    }

    static func report(_ o: ScanOutcome) -> ScanReport {
        ScanReport(scanID: o.scanID, result: o.result.rawValue, reason: o.reason, mode: o.mode.description, plannedLines: o.plannedLines,
                   lines: o.lines, gaps: o.gaps, missingFrames: o.missingFrames, missingLines: o.missingLines, exposureMs: o.exposureMs,
                   dapMGyCm2: o.dapMGyCm2, doseEstimated: o.doseEstimated, capture: o.capture, xrayOff: o.xrayOffVerified,
                   longestHostGapMs: (o.longestHostGapMs * 10).rounded() / 10)
    }

    static func params<T: Decodable>(_ v: JSONValue?) throws -> T {
        guard let v else { throw RPCError.invalidParams("params are required") }
        do { return try v.decode(T.self) } catch let e as DecodingError {
            throw RPCError.invalidParams(Self.describe(e))
        }
    }

    static func describe(_ e: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String {
            let p = c.codingPath.map(\.stringValue).joined(separator: ".")
            return p.isEmpty ? "" : "'\(p)': "
        }
        switch e {
        case let .typeMismatch(t, c): return "\(path(c))expected \(t)"
        case let .valueNotFound(t, c): return "\(path(c))expected \(t), got null"
        case let .keyNotFound(k, _): return "missing '\(k.stringValue)'"
        case let .dataCorrupted(c): return "\(path(c))\(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }

    static func rpcError(_ e: DeviceError) -> RPCError {
        switch e {
        case .notConnected, .linkLost: RPCError(code: RPCError.notConnectedCode, message: e.description)
        case .refused(_, .interlockOpen, _): RPCError(code: RPCError.interlockCode, message: e.description)
        case .refused(_, .busy, _): RPCError(code: RPCError.busyCode, message: e.description)
        default: RPCError(code: RPCError.deviceErrorCode, message: e.description)
        }
    }

    static func rpcError(_ e: ScanError) -> RPCError {
        switch e {
        case .busy: return RPCError(code: RPCError.busyCode, message: e.description)
        case .interlockOpen: return RPCError(code: RPCError.interlockCode, message: e.description)
        case .deviceNotReady, .rejected: return RPCError(code: RPCError.deviceErrorCode, message: e.description)
        case .ended(let o):
            return RPCError(code: RPCError.scanFailedCode, message: o.summary, data: try? JSONValue(encoding: report(o)))
        }
    }

    static func statusJSON(_ s: DeviceStatus, counters: LinkCounters) throws -> JSONValue {
        .object([
            "state": .string(s.state.description), "interlocks": .number(Double(s.interlocks.rawValue)),
            "interlocks_open": .array(s.interlocks.open.map { .string($0) }), "xray_on": .bool(s.xrayOn),
            "tube_temp_c": .number(Double(s.tubeTempX10) / 10), "detector_temp_c": .number(Double(s.detectorTempX10) / 10),
            "kv": .number(Double(s.kvX10) / 10), "tube_current_ua": .number(Double(s.tubeCurrentUA)),
            "arm_angle_deg": .number(Double(s.armAngleX10) / 10), "x_um": .number(Double(s.xUm)), "y_um": .number(Double(s.yUm)),
            "fault": .number(Double(s.fault.rawValue)), "fault_text": .string(s.fault.description),
            "active_scan_id": .number(Double(s.activeScanID)), "link": try JSONValue(encoding: counters),
        ])
    }

    static func noticeJSON(_ n: DeviceNotice) -> JSONValue {
        switch n {
        case .connected(let info): return .object(["type": .string("connected"), "serial": .string(info.serial)])
        case .linkLost(let why): return .object(["type": .string("link_lost"), "reason": .string(why)])
        case let .dataGap(missing, seq): return .object(["type": .string("data_gap"), "missing": .number(Double(missing)), "seq": .number(Double(seq))])
        case .event(let e):
            switch e {
            case let .stateChanged(old, new): return .object(["type": .string("state"), "old": .string(old.description), "new": .string(new.description)])
            case let .motionDone(x, y, a): return .object(["type": .string("motion_done"), "x_um": .number(Double(x)), "y_um": .number(Double(y)), "arm_angle": .number(Double(a))])
            case let .scanStarted(id, t): return .object(["type": .string("scan_started"), "scan_id": .number(Double(id)), "device_time_us": .number(Double(t))])
            case let .scanComplete(id, l, ms, dap):
                return .object(["type": .string("scan_complete"), "scan_id": .number(Double(id)), "lines": .number(Double(l)),
                                "exposure_ms": .number(Double(ms)), "dap_mgy_cm2": .number(Double(dap) / 1000)])
            case let .scanAborted(id, r, l):
                return .object(["type": .string("scan_aborted"), "scan_id": .number(Double(id)), "reason": .string(r.description), "lines_sent": .number(Double(l))])
            case let .interlocksChanged(i):
                return .object(["type": .string("interlocks"), "interlocks": .number(Double(i.rawValue)), "open": .array(i.open.map { .string($0) })])
            case let .fault(c, m): return .object(["type": .string("fault"), "code": .number(Double(c.rawValue)), "fault": .string(c.description), "message": .string(m)])
            case .watchdogExpired: return .object(["type": .string("watchdog_expired")])
            case let .faultCleared(c): return .object(["type": .string("fault_cleared"), "code": .number(Double(c.rawValue))])
            }
        }
    }
}
