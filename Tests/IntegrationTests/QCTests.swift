import DXAcquisition
import DXClinical
import DXControl
import DXProtocol
import DXSimulator
import DXTestSupport
import Foundation
import Testing

/// Phantom QC through the real daemon and socket (docs/qc.md): the QC scan of the simulator's
/// ESP phantom measured with the unit's calibration, the baseline filling, a judged result,
/// the history, a service reset; and the scans that must add nothing.
@Suite("Phantom QC through the daemon", .serialized)
struct QCTests {
    @Test func theBaselineFillsAndAResultIsJudged() async throws {
        let dir = TemporaryDirectory()
        let (calPhantom, espPhantom) = try AnalyzeTests.writePhantoms(dir)
        let daemon = try await DaemonProcess(in: dir, device: "simulator", timeScale: 50,
                                             config: ["simulator_phantom = bench", "qc_baseline_scans = 10"])
        try await daemon.waitForDevice()

        // Nothing yet: the baseline is incomplete and QC is due.
        let empty = try await daemon.call(.qcStatus, QCStatusParams())
        #expect(empty.condition == .baselineIncomplete && empty.due && empty.scans == 0 && empty.baselineScans == 10)
        // Without a calibration there is no QC, and nothing is added.
        do {
            _ = try await daemon.call(.qcRun, QCRunParams(phantom: espPhantom))
            Issue.record("a QC scan ran without a calibration")
        } catch let e as RPCError {
            #expect(e.code == RPCError.notCalibratedCode, "\(e)")
        }
        _ = try await daemon.call("service.calibrate", .object(["phantom": .string(calPhantom)]))

        // Bad input adds nothing: a phantom without ROIs (refused before anything moves), and
        // ROIs that do not lie over the phantom's bone (the wrong phantom, or off-centre: 30 mm
        // to the side, over its soft tissue only).
        do {
            _ = try await daemon.call(.qcRun, QCRunParams(phantom: calPhantom))
            Issue.record("a phantom without ROIs was scanned for QC")
        } catch let e as RPCError {
            #expect(e.code == RPCError.invalidParamsCode && e.message.contains("has no ROIs"), "\(e)")
        }
        let shifted = dir.file("esp-off-centre.json")
        let moved = (StandardPhantoms.esp.rois ?? []).map { Phantom.ROI(name: $0.name, xUm: $0.xUm.map { $0 + 30_000 }, yUm: $0.yUm) }
        try JSONEncoder().encode(Phantom(name: "ESP off-centre", cells: nil, rois: moved)).write(to: URL(fileURLWithPath: shifted))
        do {
            _ = try await daemon.call(.qcRun, QCRunParams(phantom: shifted))
            Issue.record("ROIs over soft tissue gave a QC result")
        } catch let e as RPCError {
            #expect(e.code == RPCError.scanFailedCode && e.message.contains("not over the phantom's bone") && e.message.contains("nothing added"), "\(e)")
        }
        #expect(try await daemon.call(.qcStatus, QCStatusParams()).scans == 0)

        // Ten scans set the baseline; each is "baseline" until the tenth completes it.
        var last: QCRunResult?
        for k in 1...10 {
            let r = try await daemon.call(.qcRun, QCRunParams(phantom: espPhantom))
            #expect(r.verdict == .baseline && r.status.scans == k)
            #expect(Set(r.bmdGCm2.keys) == ["L1", "L2", "L3"])
            for (name, nominal) in [("L1", 0.5), ("L2", 1.0), ("L3", 1.5)] { #expect(abs((r.bmdGCm2[name] ?? 0) / nominal - 1) < 0.02, "\(name): \(r.bmdGCm2)") }
            last = r
        }
        #expect(last?.status.condition == .inControl && last?.status.due == false, "\(String(describing: last?.status))")
        let baseline = try #require(last?.status.baseline)
        for (name, region) in baseline.regions.sorted(by: { $0.key < $1.key }) {
            print(String(format: "QC baseline %@: %.4f ± %.4f g/cm² (CV %.2f %%)", name, region.meanGCm2, region.sdGCm2, region.sdGCm2 / region.meanGCm2 * 100))
        }
        // The eleventh is judged against it.
        let judged = try await daemon.call(.qcRun, QCRunParams(phantom: espPhantom))
        #expect(judged.verdict == .pass && judged.status.condition == .inControl, "\(judged)")
        let history = try await daemon.call(.qcStatus, QCStatusParams(history: true))
        #expect(history.points?.count == 11 && history.points?.last?.deviationPercent.count == 3)
        // Audited: every QC scan, allowed, and the refusals.
        let audited = daemon.auditEntries.filter { $0["method"]?.stringValue == "qc.run" }
        #expect(audited.filter { $0["decision"]?.stringValue == "allowed" }.count >= 12, "\(audited.count)")

        // The CLI reads the same state.
        let text = try await daemon.cli(["qc", "status"])
        #expect(text.status == 0 && text.out.contains("in control") && text.out.contains("baseline (10 scans)"), "\(text.out) \(text.err)")

        // A service reset starts a new history: the baseline fills again.
        do {
            _ = try await daemon.call(.qcReset, QCResetParams(reason: "  "))
            Issue.record("a reset without a reason was accepted")
        } catch let e as RPCError { #expect(e.code == RPCError.invalidParamsCode) }
        let reset = try await daemon.call(.qcReset, QCResetParams(reason: "detector module replaced"))
        #expect(reset.condition == .baselineIncomplete && reset.scans == 0 && reset.reset?.reason == "detector module replaced")
        #expect(daemon.auditEntries.contains { $0["method"]?.stringValue == "qc.reset" && $0["decision"]?.stringValue == "allowed" })

        // Cross-calibration across the reset: nothing until ten scans after it, then the last ten
        // before against the ten after, stored, passing (the same unit, nothing changed), and
        // printed by the CLI.
        for _ in 1...9 { _ = try await daemon.call(.qcRun, QCRunParams(phantom: espPhantom)) }
        #expect(try await daemon.call(.qcStatus, QCStatusParams()).crossCalibration == nil)
        let waiting = try await daemon.cli(["qc", "cross-calibration"])
        #expect(waiting.status != 0 && waiting.err.contains("9 of the 10 phantom scans after the reset"), "\(waiting.out) \(waiting.err)")
        _ = try await daemon.call(.qcRun, QCRunParams(phantom: espPhantom))
        let cross = try #require(try await daemon.call(.qcStatus, QCStatusParams()).crossCalibration)
        #expect(cross.before.count == 10 && cross.after.count == 10 && cross.passes && cross.limitPercent == 1, "\(cross)")
        #expect(Set(cross.regions.keys) == ["L1", "L2", "L3"] && cross.regions.values.allSatisfy { abs($0.differencePercent) < 1 }, "\(cross)")
        let printed = try await daemon.cli(["qc", "cross-calibration"])
        #expect(printed.status == 0 && printed.out.contains("cross-calibration, 10 scans before and 10 after: passes"), "\(printed.out) \(printed.err)")
    }
}

/// The lockout through the real daemon, a real dexa-sim and the socket (docs/qc.md,
/// "Lockout"): patient exams refused while QC is incomplete (policy `block`), allowed once it
/// passes; a spectrum fault injected into the simulator caught by the next QC scan, which
/// locks exams again; a service override lets one start and its reason reaches the results
/// and the report; the next QC scan ends the override.
@Suite("QC lockout through the daemon", .serialized)
struct QCLockoutTests {
    static func startRefused(_ daemon: DaemonProcess, _ exam: Int, saying words: String) async throws {
        do {
            _ = try await daemon.call("exam.start", .object(["exam_id": .number(Double(exam))]))
            Issue.record("exam \(exam) started while QC locks patient exams")
        } catch let e as RPCError {
            #expect(e.code == RPCError.qcLockedCode && e.message.contains("QC") && e.message.contains(words), "\(e)")
        }
        let shown = try await daemon.call("exam.get", .object(["exam_id": .number(Double(exam))]))
        #expect(shown["state"]?.stringValue == "ready", "a refused start changes nothing: \(shown["state"] ?? .null)")
    }

    @Test func qcLocksAndUnlocksPatientExams() async throws {
        let dir = TemporaryDirectory()
        let (_, espPhantom) = try AnalyzeTests.writePhantoms(dir)
        try CalibrationFixture.install(stateDirectory: dir.file("state"))
        let sim = try await SimulatorProcess(in: dir, speed: 50, extra: ["--phantom", "esp"])
        let daemon = try await DaemonProcess(in: dir, device: "sim:\(sim.devicePath)", timeScale: 50,
                                             config: ["qc_baseline_scans = 10", "qc_when_due = block"])
        try await daemon.waitForDevice()

        // No baseline yet, and the policy blocks: refused, naming QC; nothing changes.
        let status = try await daemon.call(.qcStatus, QCStatusParams())
        #expect(status.patientExams.gate == "blocked" && status.patientExams.whenDue == .block, "\(status.patientExams)")
        let first = try await ExamTests.newExam(daemon)
        try await Self.startRefused(daemon, first, saying: "baseline incomplete")
        let cli = try await daemon.cli(["exam", "run", String(first)])
        #expect(cli.status == 4 && cli.err.contains("QC"), "\(cli.out) \(cli.err)")

        // A QC scan stopped half-way (the lines slowed so that the abort lands in it) is an
        // error and adds nothing.
        _ = try await sim.control("rate 10")
        let stopped = Task { try await daemon.call(.qcRun, QCRunParams(phantom: espPhantom)) }
        // The pass, not the scout before it: the scout also sweeps the phantom, and an abort
        // that lands as the scout ends misses both. Only the pass's sequence has an air scan.
        var sawAir = false
        try await eventually("the QC pass exposing over the phantom", seconds: 60) {
            guard let s = try? await daemon.call("device.status"), let y = s["y_um"]?.numberValue else { return false }
            if s["xray_on"] == .bool(true) && y >= 1_900_000 { sawAir = true }
            return sawAir && s["xray_on"] == .bool(true) && y > 510_000 && y < 690_000
        }
        _ = try await daemon.call("scan.abort")
        do {
            _ = try await stopped.value
            Issue.record("a QC scan stopped half-way gave a result")
        } catch let e as RPCError {
            #expect(e.code == RPCError.scanFailedCode, "\(e)")
        }
        #expect(try await daemon.call(.qcStatus, QCStatusParams()).scans == 0)
        _ = try await sim.control("rate 1")

        // Ten passing QC scans today lift it: the exam starts, and its results say nothing of QC.
        for _ in 1...10 { _ = try await daemon.call(.qcRun, QCRunParams(phantom: espPhantom)) }
        let passed = try await daemon.call(.qcStatus, QCStatusParams())
        #expect(passed.condition == .inControl && passed.patientExams.gate == "clear", "\(passed)")
        _ = try await sim.control("phantom patient")
        let step = try await daemon.call("exam.start", .object(["exam_id": .number(Double(first))]))
        #expect(step["attempt"]?["status"]?.stringValue == "completed", "\(step)")
        let clean = try await daemon.call(.examResults, ExamIDParams(examID: Int64(first)))
        #expect(clean.qualityControl.isEmpty, "\(clean.qualityControl)")
        _ = try await daemon.call("exam.abort", .object(["exam_id": .number(Double(first)), "reason": .string("test: one site is enough")]))

        // The window edge moves 0.3 keV (the simulator's fault): the next QC scan reads the
        // phantom about 2 % off and asks for a repeat; exams are locked at once.
        _ = try await sim.control("phantom esp")
        #expect(try await sim.control("spectrum high 0.3").contains("ok"))
        let off = try await daemon.call(.qcRun, QCRunParams(phantom: espPhantom))
        #expect(off.verdict == .repeatRequired && off.status.patientExams.gate == "blocked", "\(off)")
        let l2 = (off.bmdGCm2["L2"] ?? 0) / (passed.baseline?.regions["L2"]?.meanGCm2 ?? 1) - 1
        #expect(abs(l2) > 0.015, "L2 moved \(l2 * 100) %")
        let second = try await ExamTests.newExam(daemon)
        try await Self.startRefused(daemon, second, saying: "repeat")
        let again = try await daemon.call(.qcRun, QCRunParams(phantom: espPhantom))
        #expect(again.verdict == .fail && [.failed, .drifted].contains(again.status.condition), "\(again)")
        try await Self.startRefused(daemon, second, saying: again.status.condition == .drifted ? "drifted" : "failed")

        // A service override: refused without a reason; with one, the exam starts and carries it.
        do {
            _ = try await daemon.call(.qcOverride, QCOverrideParams(reason: " \n "))
            Issue.record("an override without a reason was accepted")
        } catch let e as RPCError { #expect(e.code == RPCError.invalidParamsCode) }
        let overridden = try await daemon.call(.qcOverride, QCOverrideParams(reason: "physicist checked the spectrum; patients from 09:00 cannot be moved"))
        #expect(overridden.patientExams.gate == "overridden" && overridden.override?.reason.contains("physicist") == true, "\(overridden)")
        #expect(daemon.auditEntries.contains { $0["method"]?.stringValue == "qc.override" && $0["decision"]?.stringValue == "allowed" })
        _ = try await sim.control("phantom patient")
        let underOverride = try await daemon.call("exam.start", .object(["exam_id": .number(Double(second))]))
        #expect(underOverride["attempt"]?["status"]?.stringValue == "completed", "\(underOverride)")
        let results = try await daemon.call(.examResults, ExamIDParams(examID: Int64(second)))
        #expect(results.qualityControl.count == 1 && results.qualityControl.first?.contains("QC override by") == true
                && results.qualityControl.first?.contains("physicist checked the spectrum") == true, "\(results.qualityControl)")
        let report = dir.file("override-report.png")
        let text = try await daemon.cli(["exam", "report", String(second), "--png", report])
        #expect(text.status == 0 && text.out.contains("QUALITY CONTROL: QC override by"), "\(text.out) \(text.err)")
        if let out = ProcessInfo.processInfo.environment["DEXA_REPORT_EXAMPLE"] {
            try? FileManager.default.removeItem(atPath: out + "/report-qc-override.png")
            try FileManager.default.copyItem(atPath: report, toPath: out + "/report-qc-override.png")
        }
        _ = try await daemon.call("exam.abort", .object(["exam_id": .number(Double(second)), "reason": .string("test: one site is enough")]))

        // The next QC scan ends the override, whatever it says: still off, so locked again.
        _ = try await sim.control("phantom esp")
        _ = try await daemon.call(.qcRun, QCRunParams(phantom: espPhantom))
        let third = try await ExamTests.newExam(daemon)
        try await Self.startRefused(daemon, third, saying: "QC")

        // The charts of this history, through the CLI.
        let chart = dir.file("qc-chart.png"), pdf = dir.file("qc-chart.pdf")
        let drawn = try await daemon.cli(["qc", "chart", "--png", chart, "--pdf", pdf])
        #expect(drawn.status == 0 && FileManager.default.fileExists(atPath: chart) && FileManager.default.fileExists(atPath: pdf), "\(drawn.err)")
        if let out = ProcessInfo.processInfo.environment["DEXA_REPORT_EXAMPLE"] {
            try? FileManager.default.removeItem(atPath: out + "/qc-chart-fault.png")
            try FileManager.default.copyItem(atPath: chart, toPath: out + "/qc-chart-fault.png")
        }
    }
}
