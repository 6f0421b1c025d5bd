import DXAcquisition
import DXControl
import DXProtocol
import DXSimulator
import DXTestSupport
import Foundation
import Synchronization
import Testing

/// The control socket as a client sees it: every method answers in one naming style, every
/// notification too, each decodes as its documented type, concurrent requests for the one
/// runner get one run and one refusal, and the docs list exactly the methods there are.
@Suite("Control surface", .serialized)
struct ControlSurfaceTests {
    /// Keys that break the rule `^[a-z][a-z0-9_]*$`, with their paths.
    static func badKeys(_ v: JSONValue, at path: String = "") -> [String] {
        switch v {
        case .object(let o):
            return o.flatMap { key, value -> [String] in
                let ok = key.first.map { ("a"..."z").contains($0) } == true
                    && key.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
                return (ok ? [] : [path + key]) + badKeys(value, at: path + key + ".")
            }
        case .array(let a): return a.enumerated().flatMap { badKeys($1, at: path + "\($0).") }
        default: return []
        }
    }

    /// What came back on the socket, by method and by notification.
    final class Seen: Sendable {
        let results = Mutex<[String: [JSONValue]]>([:])
        let notices = Mutex<[String: [JSONValue]]>([:])
        func result(_ m: String, _ v: JSONValue) { results.withLock { $0[m, default: []].append(v) } }
        func notice(_ m: String, _ v: JSONValue?) { notices.withLock { $0[m, default: []].append(v ?? .null) } }
    }

    /// One call on its own connection; its notifications are kept, all of them (the stream is
    /// drained after the connection closes).
    static func call(_ daemon: DaemonProcess, _ seen: Seen, _ method: ControlMethod, _ params: JSONValue? = nil) async throws -> JSONValue {
        let (result, follow) = try await ControlConnection.with(socketPath: daemon.socketPath) { c in
            let follow = Task { for await n in c.notifications { seen.notice(n.method, n.params) } }
            return (try await c.call(method.rawValue, params), follow)
        }
        await follow.value
        seen.result(method.rawValue, result)
        return result
    }

    static func code(_ body: () async throws -> JSONValue) async -> Int? {
        do { _ = try await body(); return nil } catch let e as RPCError { return e.code } catch { return -1 }
    }

    @Test func everyMethodAndNotificationSpeaksOneStyle() async throws {
        let dir = TemporaryDirectory()
        let phantom = dir.file("calibration-phantom.json")
        try JSONEncoder().encode(StandardPhantoms.calibration).write(to: URL(fileURLWithPath: phantom))
        // A budget that every exam overruns: the exam.warning notification is sent.
        var examProtocol = ExamProtocol.standard
        examProtocol.budgetMinutes = [0.001, 0.002]
        let protocolFile = dir.file("protocol.json")
        try JSONEncoder().encode(examProtocol).write(to: URL(fileURLWithPath: protocolFile))
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 50,
                                             config: ["simulator_phantom = calibration", "exam_protocol = \(protocolFile)"])
        try await daemon.waitForDevice()
        let seen = Seen()

        // A subscriber for the whole test.
        let subscribed = Mutex(false)
        let subscriber = Task {
            try await ControlConnection.with(socketPath: daemon.socketPath) { c in
                seen.result("events.subscribe", try await c.call("events.subscribe"))
                subscribed.withLock { $0 = true }
                for await n in c.notifications { seen.notice(n.method, n.params) }
            }
        }
        try await eventually("subscribed") { subscribed.withLock { $0 } }

        for m in [ControlMethod.deviceInfo, .deviceStatus, .deviceHome, .serviceSelftest, .serviceSensors, .scanAbort] {
            _ = try await Self.call(daemon, seen, m)
        }
        _ = try await Self.call(daemon, seen, .deviceMove, .object(["x_um": .number(150_000), "y_um": .number(600_000), "arm_angle_deg": .number(0)]))
        _ = try await Self.call(daemon, seen, .serviceLog, .object(["max_bytes": .number(512)]))
        _ = try await Self.call(daemon, seen, .serviceMetrics)
        let prometheus = try await Self.call(daemon, seen, .serviceMetrics, .object(["format": .string("prometheus")]))
        #expect(prometheus["text"]?.stringValue?.contains("dexa_scans_total") == true)
        _ = try await Self.call(daemon, seen, .serviceReport, .object(["captures": .number(0)]))

        // Two raw scans at once: one runs (200 s of device time, 4 s here, then aborted), the
        // other is refused busy and exposes nothing.
        let long: JSONValue = .object(["lines": .number(20_000), "line_step_um": .number(50), "y_start_um": .number(0)])
        async let first = Self.code { try await Self.call(daemon, seen, .scanRun, long) }
        async let second = Self.code { try await Self.call(daemon, seen, .scanRun, long) }
        try await eventually("one of them exposing") { (try? await daemon.call(.deviceStatus))?.xrayOn == true }
        _ = try await Self.call(daemon, seen, .scanAbort)
        let codes = await [first, second]
        #expect(codes.sorted { ($0 ?? 0) < ($1 ?? 0) } == [RPCError.scanFailedCode, RPCError.busyCode], "\(codes)")
        _ = try await Self.call(daemon, seen, .scanRun, .object(["lines": .number(40)]))
        // With references and no calibration yet: recorded, not decomposed, and said so.
        let uncalibrated = try await Self.call(daemon, seen, .scanRun, .object(["lines": .number(30), "with_references": .bool(true)]))
        #expect(uncalibrated["analysis_error"]?.stringValue != nil)

        let calibration = try await Self.call(daemon, seen, .serviceCalibrate, .object(["phantom": .string(phantom)]))
        #expect(calibration["cells"]?.intValue ?? 0 > 0)
        let analysed = try await Self.call(daemon, seen, .scanRun, .object(["lines": .number(30), "with_references": .bool(true)]))
        #expect(analysed["analysis"]?["lines"]?.intValue == 30, "\(analysed)")

        // An exam: two starts at once run one step; a next and a repeat while it runs are busy.
        let patient = PatientRecord(id: "P-7", name: "Surface Test", sex: .female, birthDate: "1950-06-01")
        let created = try await daemon.call(.examCreate, ExamCreateParams(patient: patient, referral: "screening"))
        seen.result("exam.create", try JSONValue(encoding: created))
        var answers = ChecklistAnswers()
        answers.pregnancy = .no; answers.contrast = .noStudy; answers.nuclearMedicine = .noStudy; answers.recentFracture = []; answers.metal = []
        answers.jewelleryRemoved = true; answers.heightCm = 160; answers.weightKg = 60; answers.measuredToday = true
        answers.identityConfirmed = true; answers.referralConfirmed = true
        let examID: JSONValue = .number(Double(created.id))
        let checked = try await Self.call(daemon, seen, .examChecklist, try JSONValue(encoding: ExamChecklistParams(examID: created.id, answers: answers)))
        #expect(checked["state"]?.stringValue == "ready")
        let idParams: JSONValue = .object(["exam_id": examID])
        async let startA = Self.code { try await Self.call(daemon, seen, .examStart, idParams) }
        async let startB = Self.code { try await Self.call(daemon, seen, .examStart, idParams) }
        try await eventually("the first site scanning", seconds: 30) {
            let e = try? await daemon.call(.examGet, ExamIDParams(examID: created.id))
            return e?.attempts.last?.status == .running
        }
        let nextWhileRunning = await Self.code { try await Self.call(daemon, seen, .examNext, idParams) }
        let repeatWhileRunning = await Self.code { try await Self.call(daemon, seen, .examRepeat, idParams) }
        let starts = await [startA, startB]
        #expect(starts.filter { $0 == nil }.count == 1 && starts.contains(RPCError.examStateCode), "\(starts)")
        #expect(nextWhileRunning == RPCError.busyCode && repeatWhileRunning == RPCError.busyCode, "\(String(describing: nextWhileRunning)) \(String(describing: repeatWhileRunning))")

        // Two exam.next at once: one scans the left hip, the other is refused busy.
        async let nextA = Self.code { try await Self.call(daemon, seen, .examNext, idParams) }
        async let nextB = Self.code { try await Self.call(daemon, seen, .examNext, idParams) }
        let nexts = await [nextA, nextB]
        #expect(nexts.filter { $0 == nil }.count == 1 && nexts.contains(RPCError.busyCode), "\(nexts)")
        _ = try await Self.call(daemon, seen, .examSkip, .object(["exam_id": examID, "site": .string("right_hip"), "reason": .string("prosthesis")]))
        _ = try await Self.call(daemon, seen, .examAdd, .object(["exam_id": examID, "site": .string("right_hip")]))
        _ = try await Self.call(daemon, seen, .examAbort, .object(["exam_id": examID, "reason": .string("test over")]))
        let shown = try await Self.call(daemon, seen, .examGet, idParams)
        #expect(shown["state"]?.stringValue == "aborted")
        #expect(shown["abort_cause"] == nil || shown["abort_cause"] == .null, "no cause chosen, none kept (the RIS reads the words): \(shown)")
        // The results: the AP spine was analysed the moment it completed; a phantom lies on
        // this table, so the analysis says there is no spine, and gives no number.
        let examResults = try await Self.call(daemon, seen, .examResults, idParams)
        #expect(examResults["sites"]?[0]?["note"]?.stringValue?.hasPrefix("no spine in the field") == true, "\(examResults)")
        #expect(examResults["sites"]?[0]?["result"] == nil)
        _ = try await Self.call(daemon, seen, .examList, .object(["limit": .number(5)]))
        // The DICOM queue: no DICOM service runs here, so nothing is queued, and a resend has
        // nothing to send (refused).
        let queue = try await Self.call(daemon, seen, .dicomQueue, idParams)
        #expect(queue["objects"] == .array([]) && queue["stuck"] == .bool(false), "\(queue)")
        let resend = await Self.code { try await Self.call(daemon, seen, .dicomResend, idParams) }
        #expect(resend == RPCError.invalidParamsCode)
        // No precision study yet; one from this exam alone is refused (one exam, no spine).
        let precision = try await Self.call(daemon, seen, .precisionList)
        #expect(precision["studies"] == .array([]))
        let lone = await Self.code { try await Self.call(daemon, seen, .precisionStudy, .object(["exam_ids": .array([examID, examID])])) }
        #expect(lone == RPCError.invalidParamsCode)
        // No spine on the table: disc lines cannot make one; refused, nothing changed.
        let correction = await Self.code {
            try await Self.call(daemon, seen, .examCorrect, .object(["exam_id": examID, "site": .string("ap_spine"), "reason": .string("test"),
                                                                      "disc_lines_mm": .array([.number(600), .number(630), .number(660)])]))
        }
        #expect(correction == RPCError.invalidParamsCode)
        #expect(try await Self.call(daemon, seen, .examResults, idParams) == examResults)
        // Phantom QC: the state, a QC scan of ESP ROIs over the calibration phantom's empty
        // table (refused, nothing added), a service reset.
        let qc = try await Self.call(daemon, seen, .qcStatus, .object(["history": .bool(true)]))
        #expect(qc["condition"]?.stringValue == "baseline_incomplete" && qc["scans"]?.intValue == 0, "\(qc)")
        let espFile = dir.file("esp-rois.json")
        try JSONEncoder().encode(Phantom(name: "ESP", cells: nil, rois: StandardPhantoms.esp.rois)).write(to: URL(fileURLWithPath: espFile))
        let qcScan = await Self.code { try await Self.call(daemon, seen, .qcRun, .object(["phantom": .string(espFile)])) }
        #expect(qcScan == RPCError.scanFailedCode)
        let qcReset = try await Self.call(daemon, seen, .qcReset, .object(["reason": .string("surface test")]))
        #expect(qcReset["reset"]?["reason"]?.stringValue == "surface test" && qcReset["scans"]?.intValue == 0, "\(qcReset)")
        let qcOverride = try await Self.call(daemon, seen, .qcOverride, .object(["reason": .string("surface test override")]))
        #expect(qcOverride["override"]?["reason"]?.stringValue == "surface test override"
                && qcOverride["patient_exams"]?["gate"]?.stringValue == "overridden", "\(qcOverride)")
        let reset = try await Self.call(daemon, seen, .serviceReset)
        #expect(reset["reconnected"] == .bool(true))
        subscriber.cancel()
        _ = try? await subscriber.value

        // Every method answered (the refused ones share their result type with one that did:
        // exam.next and exam.repeat are exam.start's `ExamStepResult`; precision.study and
        // exam.correct need analysed exams: FollowUpIntegrationTests and
        // CorrectionIntegrationTests check their results' keys; qc.run needs the QC phantom on
        // the table: QCTests; dicom.resend needs queued objects: DicomQueueTests).
        let results = seen.results.withLock { $0 }
        let notices = seen.notices.withLock { $0 }
        let answered = Set(results.keys)
        #expect(Set(ControlMethod.allCases.map(\.rawValue)).subtracting(answered) == ["exam.correct", "exam.repeat", "precision.study", "qc.run", "dicom.resend"])
        for (method, values) in results {
            for v in values { #expect(Self.badKeys(v).isEmpty, "\(method): \(Self.badKeys(v))") }
        }
        #expect(Set(notices.keys) == Set(ControlNotification.allCases.map(\.rawValue)), "\(notices.keys.sorted())")
        for (method, values) in notices {
            for v in values { #expect(Self.badKeys(v).isEmpty, "\(method): \(Self.badKeys(v))") }
        }
        // Each decodes as its type, strictly (no key the type does not have): the types are
        // the documentation.
        func decodes<T: Decodable>(_ type: T.Type, _ values: [JSONValue]?) {
            #expect(values?.isEmpty == false, "no \(T.self) seen")
            for v in values ?? [] {
                do { _ = try StrictDecoder.decode(T.self, from: v) } catch { Issue.record("\(T.self): \(error)") }
            }
        }
        decodes(DeviceInfoResult.self, results["device.info"])
        decodes(DeviceStatusResult.self, results["device.status"])
        decodes(PositionResult.self, results["device.move"])
        decodes(ScanReport.self, results["scan.run"])
        decodes(ScanAbortResult.self, results["scan.abort"])
        decodes(SelfTestResult.self, results["service.selftest"])
        decodes(SensorsResult.self, results["service.sensors"])
        decodes(MetricsResult.self, results["service.metrics"])
        decodes(CalibrateResult.self, results["service.calibrate"])
        decodes(ResetResult.self, results["service.reset"])
        decodes(ExamStepResult.self, results["exam.start"])
        decodes(ExamStepResult.self, results["exam.next"])
        decodes(ExamRecord.self, results["exam.abort"])
        decodes(LogResult.self, results["service.log"])
        decodes(ServiceReportResult.self, results["service.report"])
        decodes(PositionResult.self, results["device.home"])
        decodes(ExamRecord.self, results["exam.get"])
        decodes(ExamListResult.self, results["exam.list"])
        decodes(ExamResults.self, results["exam.results"])
        decodes(ScanProgressNotice.self, notices["scan.progress"])
        decodes(DeviceEventNotice.self, notices["event"])
        decodes(ExamStepNotice.self, notices["exam.step"])
        decodes(ExamWarningNotice.self, notices["exam.warning"])
        // The results docs/control-protocol.md spells out name every key the code sends.
        let docs = try String(contentsOf: Self.protocolDocument, encoding: .utf8)
        func keys(_ v: JSONValue) -> Set<String> {
            switch v {
            case .object(let o): return o.reduce(into: Set(o.keys)) { $0.formUnion(keys($1.value)) }
            case .array(let a): return a.reduce(into: Set<String>()) { $0.formUnion(keys($1)) }
            default: return []
            }
        }
        for method in ["device.status", "service.metrics", "exam.get", "exam.results", "scan.run", "qc.status", "qc.reset", "qc.override"] {
            let sent = (results[method] ?? []).reduce(into: Set<String>()) { $0.formUnion(keys($1)) }
            let undocumented = sent.filter { key in
                docs.range(of: "(^|[^a-z0-9_])\(key)([^a-z0-9_]|$)", options: .regularExpression) == nil
            }
            #expect(undocumented.isEmpty, "\(method) sends keys docs/control-protocol.md does not name: \(undocumented.sorted())")
        }
        // The dose of the exam's scans is in the metrics with everything else (the full
        // exam test checks the sums).
        let metrics = try await daemon.call(.serviceMetrics, MetricsParams()).metrics
        #expect(metrics.scansCompleted >= 1 + 3 + 3 + 5)
    }

    /// A parameter a method does not know is refused with -32602 naming it, and nothing
    /// happens: a misspelt current does not expose with the default one.
    @Test func unknownParametersAreRefusedNeverIgnored() async throws {
        let dir = TemporaryDirectory()
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 20)
        try await daemon.waitForDevice()
        let before = try await daemon.call(.deviceStatus)
        let refused: [(ControlMethod, JSONValue)] = [
            (.scanRun, .object(["lines": .number(20), "tube_curent_ua": .number(100)])),
            (.scanRun, .object(["lines": .number(20), "mode": .string("dual"), "with_reference": .bool(true)])),
            (.deviceMove, .object(["x_um": .number(1000), "y_um": .number(1000), "arm_angle": .number(900)])),
            (.deviceStatus, .object(["verbose": .bool(true)])),
            (.deviceMove, .object(["x_um": .number(1000), "y_um": .number(1000), "arm_angle_deg": .number(900)])),
            (.serviceCalibrate, .object(["phantom": .string("/nonexistent"), "line_step": .number(500)])),
            (.examCreate, .object(["patient": .object(["id": .string("P"), "name": .string("N"), "sex": .string("male"),
                                                      "birth_date": .string("1950-01-01"), "weight": .number(80)]), "referral": .string("r")])),
            (.examList, .object(["limt": .number(3)])),
            (.scanRun, .array([.number(20)])),
        ]
        for (method, params) in refused {
            do {
                _ = try await daemon.call(method.rawValue, params)
                Issue.record("\(method.rawValue) \(params) was accepted")
            } catch let e as RPCError {
                #expect(e.code == RPCError.invalidParamsCode, "\(method.rawValue): \(e)")
                if case .object(let o) = params, let unknown = o.keys.first(where: { !["lines", "mode", "x_um", "y_um", "arm_angle_deg", "phantom", "patient", "referral"].contains($0) }) {
                    #expect(e.message.hasPrefix("invalid params: unknown parameter '\(unknown)'"), "\(e.message)")
                }
            }
        }
        let status = try await daemon.call(.deviceStatus)
        #expect(status.xrayOn == false)
        #expect(status.xUm == before.xUm && status.yUm == before.yUm && status.armAngleDeg == before.armAngleDeg, "the gantry moved")
        // The refused exposures are on the audit trail as refused, with the reason.
        let audited = daemon.auditEntries.filter { $0["method"]?.stringValue == "scan.run" }
        #expect(audited.count == 3 && audited.allSatisfy { $0["decision"]?.stringValue == "refused" && ($0["detail"]?.stringValue ?? "").contains("-32602") }, "\(audited)")
        let metrics = try await daemon.call(.serviceMetrics, MetricsParams()).metrics
        #expect(metrics.scansCompleted + metrics.scansAborted + metrics.scansInterrupted == 0, "something was scanned")
        #expect(try await daemon.call(.examList, ExamListParams()).exams.isEmpty)
    }

    /// docs/control-protocol.md lists exactly the methods and notifications there are, and
    /// every error code the daemon uses.
    static var protocolDocument: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/control-protocol.md")
    }

    @Test func theProtocolDocumentListsTheMethodTable() throws {
        let text = try String(contentsOf: Self.protocolDocument, encoding: .utf8)
        var listed: [String] = []
        for line in text.split(separator: "\n") where line.hasPrefix("| `") {
            let name = line.dropFirst(3).prefix { $0 != "`" }
            listed.append(String(name))
        }
        let notifications = Set(ControlNotification.allCases.map(\.rawValue))
        // First-column names with a dot are methods, unless they are notifications.
        let methods = listed.filter { $0.contains(".") && !notifications.contains($0) }
        #expect(Set(methods) == Set(ControlMethod.allCases.map(\.rawValue)), "listed \(methods.sorted())")
        #expect(methods.count == Set(methods).count, "a method is listed twice")
        for n in ControlNotification.allCases { #expect(listed.contains(n.rawValue), "notification \(n.rawValue) not in the docs") }
        for code in [RPCError.parseErrorCode, RPCError.invalidRequestCode, RPCError.methodNotFoundCode, RPCError.invalidParamsCode,
                     RPCError.internalErrorCode, RPCError.deviceErrorCode, RPCError.notConnectedCode, RPCError.busyCode,
                     RPCError.interlockCode, RPCError.scanFailedCode, RPCError.forbiddenCode, RPCError.notCalibratedCode,
                     RPCError.examStateCode, RPCError.notReadyCode, RPCError.qcLockedCode, RPCError.storageCode] {
            #expect(text.contains("| \(code) |"), "error code \(code) not in the docs")
        }
        for status in ExitStatus.allCases { #expect(text.contains("| \(status.rawValue) |"), "exit status \(status.rawValue) not in the docs") }
    }
}
