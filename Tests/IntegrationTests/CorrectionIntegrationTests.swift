import DXAcquisition
import DXAnalysis
import DXDecomposition
import DXControl
import DXTestSupport
import Foundation
import Testing

/// ROI corrections through the real daemon and CLI: a disc line moved, the vertebrae renamed,
/// the neck box moved, each recomputed from the stored scan, on the exam's record (who, when,
/// why, before and after) and in the audit trail, kept across a restart; refusals change nothing.
@Suite("ROI corrections through the daemon", .serialized)
struct CorrectionIntegrationTests {
    /// A calibrated daemon with the standard patient's exam started (its AP spine scanned).
    static func startedExam(_ dir: TemporaryDirectory) async throws -> (DaemonProcess, Int) {
        try await ExamTests.calibrated(dir)
        let daemon = try await ExamTests.patientDaemon(dir, patient: "patient")
        let id = try await ExamTests.newExam(daemon)
        _ = try await daemon.call("exam.start", .object(["exam_id": .number(Double(id))]))
        return (daemon, id)
    }

    /// Each request refused by `exam.correct` as invalid parameters (-32602).
    static func expectRefused(_ requests: [JSONValue], by daemon: DaemonProcess) async throws {
        for bad in requests {
            do {
                _ = try await daemon.call("exam.correct", bad)
                Issue.record("applied: \(bad)")
            } catch let e as RPCError {
                #expect(e.code == RPCError.invalidParamsCode, "\(bad): \(e)")
                print("refused: \(e.message)")
            }
        }
    }

    @Test func correctionsAreRecomputedRecordedAndAudited() async throws {
        let dir = TemporaryDirectory()
        var (daemon, id) = try await Self.startedExam(dir)
        let exam: JSONValue = .number(Double(id))
        let hip = try await daemon.call("exam.next", .object(["exam_id": exam]))
        #expect(hip["attempt"]?["site"]?.stringValue == "left_hip" && hip["attempt"]?["status"]?.stringValue == "completed", "\(hip)")
        for site in ["right_hip", "lateral_spine"] {
            _ = try await daemon.call("exam.skip", .object(["exam_id": exam, "site": .string(site), "reason": .string("correction test")]))
        }
        let examID = Int64(id)
        let before = try await daemon.call(.examResults, ExamIDParams(examID: examID))
        let spine = try #require(before.sites.first { $0.site == "ap_spine" }?.result)
        let l2 = try #require(spine.spine?.vertebra("L2")), l3 = try #require(spine.spine?.vertebra("L3"))

        // Refused, and nothing changes: no reason, a hip's correction on the spine, a key the
        // method does not know, a site not scanned, lines that do not fit, an unknown name.
        let refusals: [JSONValue] = [
            .object(["exam_id": exam, "site": .string("ap_spine"), "reason": .string(" "), "relabel": .object(["from": .string("L3"), "to": .string("L4")])]),
            .object(["exam_id": exam, "site": .string("ap_spine"), "reason": .string("r"), "neck_box_shift_mm": .number(2)]),
            .object(["exam_id": exam, "site": .string("ap_spine"), "reason": .string("r"), "disc_line_mm": .array([.number(600)])]),
            .object(["exam_id": exam, "site": .string("right_hip"), "reason": .string("r"), "neck_box_shift_mm": .number(2)]),
            .object(["exam_id": exam, "site": .string("ap_spine"), "reason": .string("r"), "disc_lines_mm": .array([.number(700), .number(600), .number(650)])]),
            .object(["exam_id": exam, "site": .string("ap_spine"), "reason": .string("r"), "relabel": .object(["from": .string("X9"), "to": .string("L4")])]),
            .object(["exam_id": exam, "site": .string("left_hip"), "reason": .string("r"), "neck_box_shift_mm": .number(40)]),
            .object(["exam_id": exam, "site": .string("ap_spine"), "reason": .string("r")]),
            .object(["exam_id": .number(999), "site": .string("ap_spine"), "reason": .string("r"), "reset": .bool(true)]),
            .object(["exam_id": exam, "site": .string("left_hip"), "reason": .string("r"), "reset": .bool(true), "neck_box_shift_mm": .number(1)]),
            .object(["exam_id": exam, "site": .string("ap_spine"), "reason": .string("r"), "l4_y_mm": .number(l3.centreYMM),
                     "relabel": .object(["from": .string("L3"), "to": .string("L4")])]),
            .object(["exam_id": exam, "site": .string("ap_spine"), "reason": .string("bell\u{7}"), "l4_y_mm": .number(l3.centreYMM)]),
        ]
        try await Self.expectRefused(refusals, by: daemon)
        #expect(try await daemon.call(.examResults, ExamIDParams(examID: examID)) == before)

        // The CLI: the disc line between L2 and L3 moved 3 mm towards the feet.
        let moved = try await daemon.cli(["exam", "correct", String(id), "ap_spine", "--move-disc", "L2/L3=+3", "--reason", "L2-L3 line on the end plate"])
        print(moved.out)
        #expect(moved.status == 0 && moved.out.contains("ROIs corrected by") && moved.out.contains("L2: \(String(format: "%.3f", l2.bmdGCm2 ?? 0)) →"), "\(moved)")
        let afterMove = try await daemon.call(.examResults, ExamIDParams(examID: examID))
        let spineSite = try #require(afterMove.sites.first { $0.site == "ap_spine" })
        let movedL2 = try #require(spineSite.result?.spine?.vertebra("L2")), movedL3 = try #require(spineSite.result?.spine?.vertebra("L3"))
        #expect(abs(movedL2.lower.yMM - (l2.lower.yMM + 3)) < 1e-9 && movedL2.areaCm2 > l2.areaCm2 && movedL3.areaCm2 < l3.areaCm2)
        #expect(spineSite.corrections.count == 1 && spineSite.corrections[0].reason == "L2-L3 line on the end plate")
        let record = spineSite.corrections[0]
        #expect(record.by == NSUserName() && record.before.first { $0.name == "L2" }?.bmdGCm2 == l2.bmdGCm2)
        #expect(record.after.first { $0.name == "L2" }?.bmdGCm2 == movedL2.bmdGCm2)
        #expect(spineSite.result?.correction?.discLinesMM?.count == (spine.spine?.vertebrae.count ?? 0) + 1)

        // Renamed through the socket, typed: the vertebra called L3 is L4.
        let renamed = try await daemon.call(.examCorrect, ExamCorrectParams(examID: examID, site: .apSpine, reason: "transitional vertebra: counted from T12",
                                                                            relabel: .init(from: "L3", to: "L4")))
        #expect(renamed.result.spine?.labelling.decidedBy == .technologist)
        #expect(renamed.result.spine?.vertebra("L4")?.centreYMM == movedL3.centreYMM)
        #expect(renamed.result.correction?.discLinesMM == spineSite.result?.correction?.discLinesMM, "the moved line stays")

        // The neck box, 3 mm towards the trochanter.
        let hipBefore = try #require(before.sites.first { $0.site == "left_hip" }?.result)
        let neck = try await daemon.call(.examCorrect, ExamCorrectParams(examID: examID, site: .leftHip, reason: "box clear of the trochanter", neckBoxShiftMM: 3))
        print("neck \(hipBefore.roi("neck")?.bmdGCm2 ?? .nan) → \(neck.result.roi("neck")?.bmdGCm2 ?? .nan)")
        #expect(neck.result.correction == ROICorrection(neckBoxShiftMM: 3))
        #expect(neck.result.roi("neck")?.bmdGCm2 != hipBefore.roi("neck")?.bmdGCm2)

        // The audit trail has every call, with who and the parameters; the refused ones too.
        let audited = daemon.auditEntries.filter { $0["method"]?.stringValue == "exam.correct" }
        // Each call is written when it is let through and again when it fails; the misspelt key
        // is refused before it is let through.
        let allowed = audited.filter { $0["decision"]?.stringValue == "allowed" }.count
        #expect(allowed == refusals.count - 1 + 3 && audited.count - allowed == refusals.count, "\(audited.map { $0["decision"] ?? .null })")
        #expect(audited.contains { $0["decision"]?.stringValue == "allowed" && $0["params"]?["neck_box_shift_mm"]?.numberValue == 3 }, "\(audited)")

        // The report says it; the results survive a restart.
        let report = try await daemon.cli(["exam", "report", String(id), "--png", dir.file("corrected.png")])
        #expect(report.status == 0 && report.out.contains("vertebrae named from the technologist's correction") && report.out.contains("ROIs corrected by"), "\(report.out)")
        if let out = ProcessInfo.processInfo.environment["DEXA_REPORT_EXAMPLE"] {
            try? FileManager.default.removeItem(atPath: out + "/report-corrected.png")
            try FileManager.default.copyItem(atPath: dir.file("corrected.png"), toPath: out + "/report-corrected.png")
        }
        let kept = try await daemon.call(.examResults, ExamIDParams(examID: examID))
        daemon.child.signal(SIGTERM)
        _ = await daemon.child.waitForExit()
        try? FileManager.default.removeItem(atPath: daemon.socketPath)
        daemon = try await ExamTests.patientDaemon(dir, patient: "patient")
        #expect(try await daemon.call(.examResults, ExamIDParams(examID: examID)) == kept)

        // Back to the automatic ROIs: the numbers of the first analysis again, on the record.
        let reset = try await daemon.cli(["exam", "correct", String(id), "ap_spine", "--reset", "--reason", "as analysed", "--json"])
        #expect(reset.status == 0, "\(reset.err)")
        let final = try await daemon.call(.examResults, ExamIDParams(examID: examID))
        let finalSpine = try #require(final.sites.first { $0.site == "ap_spine" })
        #expect(finalSpine.result?.rois == spine.rois && finalSpine.result?.correction == nil && finalSpine.corrections.count == 3)
        let bad = try await daemon.cli(["exam", "correct", String(id), "ap_spine", "--move-disc", "T8/T9=+1", "--reason", "x"])
        #expect(bad.status == ExitStatus.badInput.rawValue && bad.err.contains("no disc line between T8 and T9"), "\(bad)")
        // Names that are not neighbours, reset with a change, a reason too long: refused before anything is sent.
        for args in [["--move-disc", "L1/L3=+1"], ["--reset", "--relabel", "L3=L4"], ["--relabel", "L3"]] {
            let r = try await daemon.cli(["exam", "correct", String(id), "ap_spine", "--reason", "x"] + args)
            #expect(r.status == ExitStatus.badInput.rawValue, "\(args): \(r)")
        }
        let long = try await daemon.cli(["exam", "correct", String(id), "left_hip", "--neck-box", "-2", "--reason", String(repeating: "r", count: 501)])
        #expect(long.status == ExitStatus.badInput.rawValue && long.err.contains("at most 500"), "\(long)")
        // A negative move parses (towards the head), and a request made on another attempt's image is refused.
        let back = try await daemon.cli(["exam", "correct", String(id), "left_hip", "--neck-box", "-2", "--reason", "towards the head"])
        #expect(back.status == 0 && back.out.contains("neck box moved -2.0 mm"), "\(back)")
        do {
            _ = try await daemon.call(.examCorrect, ExamCorrectParams(examID: examID, site: .leftHip, reason: "stale image", neckBoxShiftMM: 1, attempt: 2))
            Issue.record("a correction for attempt 2 landed on attempt 1")
        } catch let e as RPCError {
            #expect(e.code == RPCError.invalidParamsCode && e.message.contains("from attempt 1, not 2"), "\(e)")
        }
    }
}

/// The reader's corrections of the vertebral fracture assessment through the real daemon and
/// CLI: a point moved (heights and grades recomputed), a grade set by eye over the measured
/// one, a vertebra restored, reset; each on the record with the grades before and after and in
/// the audit trail; garbage refused with nothing changed.
@Suite("VFA corrections through the daemon", .serialized)
struct VFACorrectionIntegrationTests {
    @Test func pointsAndGradesAreRecomputedRecordedAndAudited() async throws {
        let dir = TemporaryDirectory()
        let (daemon, id) = try await CorrectionIntegrationTests.startedExam(dir)
        let exam: JSONValue = .number(Double(id))
        let examID = Int64(id)
        for site in ["left_hip", "right_hip"] {
            _ = try await daemon.call("exam.skip", .object(["exam_id": exam, "site": .string(site), "reason": .string("VFA correction test")]))
        }
        let lateral = try await daemon.call("exam.next", .object(["exam_id": exam]))
        #expect(lateral["attempt"]?["site"]?.stringValue == "lateral_spine" && lateral["attempt"]?["status"]?.stringValue == "completed", "\(lateral)")
        let before = try await daemon.call(.examResults, ExamIDParams(examID: examID))
        let vfa = try #require(before.sites.first { $0.site == "lateral_spine" }?.result?.vfa)
        let t8 = try #require(vfa.vertebra("T8"))
        #expect(t8.readable && t8.grade == 0 && t8.points.count == 6, "\(t8)")

        // Refused, and nothing changes.
        func pts(_ p: [[Double]]) -> JSONValue { .array(p.map { .array($0.map { .number($0) }) }) }
        let p = t8.points
        let upsideDown = [p[3], p[4], p[5], p[0], p[1], p[2]]
        let far = p.map { [$0[0] + 5000, $0[1]] }
        func request(_ site: String, _ extra: [String: JSONValue]) -> JSONValue {
            .object(["exam_id": exam, "site": .string(site), "reason": .string("r")].merging(extra) { $1 })
        }
        let refusals: [JSONValue] = [
            request("ap_spine", ["vertebra_points": .object(["vertebra": .string("T8"), "points": pts(p)])]),
            request("lateral_spine", ["neck_box_shift_mm": .number(2)]),
            request("lateral_spine", ["vertebra_points": .object(["vertebra": .string("T2"), "points": pts(p)])]),
            request("lateral_spine", ["vertebra_points": .object(["vertebra": .string("T8"), "points": pts(Array(p.prefix(5)))])]),
            request("lateral_spine", ["vertebra_points": .object(["vertebra": .string("T8"), "points": pts(upsideDown)])]),
            request("lateral_spine", ["vertebra_points": .object(["vertebra": .string("T8"), "points": pts(far)])]),
            request("lateral_spine", ["vertebra_points": .object(["vertebra": .string("T8"), "points": .array([.string("x")])])]),
            request("lateral_spine", ["vertebra_point": .object(["vertebra": .string("T8"), "points": pts(p)])]),
            request("lateral_spine", ["vertebra_grade": .object(["vertebra": .string("T8"), "grade": .number(5), "type": .string("wedge")])]),
            request("lateral_spine", ["vertebra_grade": .object(["vertebra": .string("T8"), "grade": .number(2)])]),
            request("lateral_spine", ["vertebra_grade": .object(["vertebra": .string("T8"), "grade": .number(0), "type": .string("crush")])]),
            request("lateral_spine", ["vertebra_grade": .object(["vertebra": .string("T8"), "grade": .number(2), "type": .string("wedgy")])]),
            request("lateral_spine", ["vertebra_grade": .object(["vertebra": .string("T8"), "grade": .number(2), "type": .string("wedge"), "sure": .bool(true)])]),
            request("lateral_spine", ["vertebra_restore": .string("T8")]),
            request("lateral_spine", ["vertebra_restore": .string("T8"), "vertebra_grade": .object(["vertebra": .string("T8"), "grade": .number(1), "type": .string("wedge")])]),
        ]
        try await CorrectionIntegrationTests.expectRefused(refusals, by: daemon)
        #expect(try await daemon.call(.examResults, ExamIDParams(examID: examID)) == before)

        // The CLI: T8's upper anterior point moved 6 mm down: its anterior height falls by about
        // 6 mm and the wedge is graded from it; every other vertebra is graded again.
        let moved = try await daemon.cli(["exam", "correct", String(id), "lateral_spine", "--move-point", "T8.upper-anterior=0,+6",
                                          "--reason", "anterior endplate lower than traced"])
        print(moved.out)
        #expect(moved.status == 0 && moved.out.contains("T8: grade 0 →"), "\(moved)")
        let afterMove = try await daemon.call(.examResults, ExamIDParams(examID: examID))
        let site = try #require(afterMove.sites.first { $0.site == "lateral_spine" })
        let movedT8 = try #require(site.result?.vfa?.vertebra("T8"))
        let wantAnterior = ((p[5][0] - p[2][0]) * (p[5][0] - p[2][0]) + (p[5][1] - p[2][1] - 6) * (p[5][1] - p[2][1] - 6)).squareRoot()
        #expect(movedT8.pointsBy == "reader" && abs((movedT8.anteriorMM ?? 0) - wantAnterior) < 1e-6, "\(movedT8)")
        #expect((movedT8.grade ?? 0) >= 1 && movedT8.kind == .wedge, "\(movedT8)")
        #expect(site.corrections.count == 1 && site.corrections[0].before.first { $0.name == "T8" }?.grade == 0)
        #expect(site.corrections[0].after.first { $0.name == "T8" }?.grade == movedT8.grade)
        #expect(site.result?.correction?.vfaPoints?["T8"]?[2][1] == p[2][1] + 6)

        // Typed, through the socket: T10 graded 2 crush by eye over the measured 0.
        let graded = try await daemon.call(.examCorrect, ExamCorrectParams(examID: examID, site: .lateralSpine, reason: "read by the radiologist",
                                                                          vertebraGrade: .init(vertebra: "T10", grade: 2, type: .crush)))
        let t10 = try #require(graded.result.vfa?.vertebra("T10"))
        #expect(t10.grade == 2 && t10.kind == .crush && t10.gradeBy == "reader" && t10.measuredGrade == 0, "\(t10)")
        #expect(graded.result.vfa?.vertebra("T8")?.pointsBy == "reader", "the moved points stay")
        #expect(graded.result.vfa?.summary.contains("T10 grade 2 crush (the reader's)") == true, "\(graded.result.vfa?.summary ?? "")")

        // The audit trail has every call, with the parameters.
        let audited = daemon.auditEntries.filter { $0["method"]?.stringValue == "exam.correct" }
        #expect(audited.contains { $0["decision"]?.stringValue == "allowed" && $0["params"]?["vertebra_grade"]?["vertebra"]?.stringValue == "T10" }, "\(audited)")
        #expect(audited.contains { $0["params"]?["vertebra_points"]?["vertebra"]?.stringValue == "T8" }, "\(audited)")

        // The report's text says whose grades they are.
        let report = try await daemon.cli(["exam", "report", String(id), "--png", dir.file("vfa-corrected.png")])
        #expect(report.status == 0 && report.out.contains("the reader's; measured 0") && report.out.contains("points placed by the reader"), "\(report.out)")
        if let out = ProcessInfo.processInfo.environment["DEXA_REPORT_EXAMPLE"] {
            for file in try FileManager.default.contentsOfDirectory(atPath: dir.path) where file.hasPrefix("vfa-corrected") && file.hasSuffix(".png") {
                try? FileManager.default.removeItem(atPath: out + "/report-" + file)
                try FileManager.default.copyItem(atPath: dir.file(file), toPath: out + "/report-" + file)
            }
        }

        // T8 given back to the analysis; then everything reset.
        let restored = try await daemon.cli(["exam", "correct", String(id), "lateral_spine", "--restore", "T8", "--reason", "as traced"])
        #expect(restored.status == 0, "\(restored)")
        let now = try await daemon.call(.examResults, ExamIDParams(examID: examID))
        let nowT8 = try #require(now.sites.first { $0.site == "lateral_spine" }?.result?.vfa?.vertebra("T8"))
        #expect(nowT8 == t8, "\(nowT8)")
        let reset = try await daemon.cli(["exam", "correct", String(id), "lateral_spine", "--reset", "--reason", "as analysed"])
        #expect(reset.status == 0, "\(reset)")
        let final = try await daemon.call(.examResults, ExamIDParams(examID: examID))
        let finalSite = try #require(final.sites.first { $0.site == "lateral_spine" })
        #expect(finalSite.result?.vfa == vfa && finalSite.result?.correction == nil && finalSite.corrections.count == 4)
        // Refused by the CLI before anything is sent.
        for args in [["--move-point", "T8.top=0,1"], ["--grade", "T8=two"], ["--vertebra-points", "T8=1,2,3"], ["--reset", "--grade", "T8=1:wedge"],
                     ["--move-point", "T8.upper-anterior=0,1", "--move-point", "T9.upper-anterior=0,1"]] {
            let r = try await daemon.cli(["exam", "correct", String(id), "lateral_spine", "--reason", "x"] + args)
            #expect(r.status == ExitStatus.badInput.rawValue, "\(args): \(r)")
        }
    }
}

/// A lateral spine scanned single-energy (the protocol's `mode: single`) through the daemon:
/// scanned, its image made and kept beside the capture (a single-energy scan, rows present),
/// no bone mineral in the quick look, and the vertebrae measured on it, said to be.
@Suite("Single-energy lateral spine through the daemon", .serialized)
struct SingleEnergyLateralIntegrationTests {
    @Test func scannedKeptAndMeasured() async throws {
        let dir = TemporaryDirectory()
        try await ExamTests.calibrated(dir)
        let protocolFile = dir.file("protocol.json")
        try Data(#"{"sites": {"lateral_spine": {"mode": "single"}}}"#.utf8).write(to: URL(fileURLWithPath: protocolFile))
        let daemon = try await ExamTests.patientDaemon(dir, patient: "patient", extra: ["exam_protocol = \(protocolFile)"])
        let id = try await ExamTests.newExam(daemon)
        let exam: JSONValue = .number(Double(id))
        _ = try await daemon.call("exam.start", .object(["exam_id": exam]))
        for site in ["left_hip", "right_hip"] {
            _ = try await daemon.call("exam.skip", .object(["exam_id": exam, "site": .string(site), "reason": .string("single-energy test")]))
        }
        let lateral = try await daemon.call("exam.next", .object(["exam_id": exam]))
        let attempt = try #require(lateral["attempt"])
        #expect(attempt["site"]?.stringValue == "lateral_spine" && attempt["status"]?.stringValue == "completed", "\(lateral)")
        #expect(attempt["quick_look"]?["note"]?.stringValue?.contains("single-energy image") == true, "\(attempt)")
        #expect(attempt["quick_look"]?["mean_bone_bmd_g_cm2"] == nil || attempt["quick_look"]?["mean_bone_bmd_g_cm2"] == .null)
        let scan = try DecomposedScan.read(path: try #require(attempt["decomposed"]?.stringValue))
        #expect(scan.provenance.singleEnergy == true && scan.provenance.region == "lateral_spine" && scan.rowPresent.allSatisfy { $0 })
        #expect(scan.bone.filter(\.isFinite).count > scan.bone.count / 2, "the image has no numbers")
        guard case .array(let vertebrae)? = attempt["analysis"]?["vfa"]?["vertebrae"], case .array(let warnings)? = attempt["analysis"]?["warnings"] else {
            Issue.record("no VFA in \(attempt)"); return
        }
        #expect(vertebrae.count == 13 && vertebrae.filter { $0["readable"] == .bool(true) }.count >= 10, "\(vertebrae)")
        #expect(warnings.contains { $0["code"]?.stringValue == "single_energy" }, "\(warnings)")
    }
}
