import DXAcquisition
import DXControl
import DXTestSupport
import Foundation
import Testing

/// A patient's follow-up through the real daemon: two spine exams make a (small) precision
/// study with `dexa precision study --save`; the third exam's results compare it with the
/// second against that LSC; an exam on another unit is not compared.
@Suite("Follow-up and precision through the daemon")
struct FollowUpIntegrationTests {
    /// An exam of the AP spine alone (the other sites skipped); its id.
    static func spineExam(_ daemon: DaemonProcess) async throws -> Int64 {
        let id = try await ExamTests.newExam(daemon)
        let exam: JSONValue = .number(Double(id))
        let step = try await daemon.call("exam.start", .object(["exam_id": exam]))
        #expect(step["attempt"]?["site"]?.stringValue == "ap_spine" && step["attempt"]?["status"]?.stringValue == "completed", "\(step)")
        for site in ["left_hip", "right_hip", "lateral_spine"] {
            _ = try await daemon.call("exam.skip", .object(["exam_id": exam, "site": .string(site), "reason": .string("spine only (follow-up test)")]))
        }
        return Int64(id)
    }

    @Test func aFollowUpAgainstThePriorExamWithThisDevicesLSC() async throws {
        let dir = TemporaryDirectory()
        try await ExamTests.calibrated(dir)
        let daemon = try await ExamTests.patientDaemon(dir, patient: "patient")
        try await daemon.waitForDevice()
        let first = try await Self.spineExam(daemon)
        // A first exam has nothing to follow up.
        let alone = try await daemon.call(.examResults, ExamIDParams(examID: first))
        #expect(alone.followUp == nil)
        let second = try await Self.spineExam(daemon)

        // The precision study over the two (one patient, 1 degree of freedom: said), saved.
        let study = try await daemon.cli(["precision", "study", String(first), String(second), "--save", "--json"])
        #expect(study.status == 0, "\(study.err)")
        let result = try JSONDecoder().decode(PrecisionStudyResult.self, from: Data(study.out.utf8))
        #expect(ControlSurfaceTests.badKeys(try JSONDecoder().decode(JSONValue.self, from: Data(study.out.utf8))).isEmpty)
        #expect(ControlSurfaceTests.badKeys(try JSONValue(encoding: try await daemon.call(.examResults, ExamIDParams(examID: second)))).isEmpty)
        let spine = try #require(result.rois.first { $0.roi == "L1-L4" })
        #expect(result.saved && result.device == "DX-1 DX1-000123" && result.rois.map(\.roi) == ["L1-L4"])
        #expect(spine.patients == 1 && spine.degreesOfFreedom == 1 && !spine.meetsISCD)
        #expect(spine.rmsSDGCm2 > 0 && spine.rmsCVPercent < 1.9 && abs(spine.lscGCm2 - 2.77 * spine.rmsSDGCm2) < 1e-12)
        print("precision over exams \(first) and \(second): RMS-SD \(spine.rmsSDGCm2) g/cm², CV \(spine.rmsCVPercent) %, LSC \(spine.lscGCm2)")
        #expect(daemon.auditEntries.contains { $0["method"]?.stringValue == "precision.study" && $0["decision"]?.stringValue == "allowed" })
        let list = try await daemon.call(.precisionList, NoParams())
        #expect(list.studies.map(\.roi) == ["L1-L4"] && list.studies.first?.createdBy != nil)

        // The third exam: compared with the second, against the stored LSC.
        let third = try await Self.spineExam(daemon)
        let results = try await daemon.call(.examResults, ExamIDParams(examID: third))
        let follow = try #require(results.followUp)
        #expect(follow.prior.examID == second)
        let change = try #require(follow.changes.first)
        #expect(follow.changes.count == 1 && change.roi == "L1-L4" && change.site == "ap_spine")
        #expect(change.lscGCm2 == spine.lscGCm2 && change.significant != nil)
        #expect(change.notes.contains { $0.contains("1 degree of freedom") })
        // The same patient on the same device: the change is the noise of a rescan, well under 1 %.
        #expect(abs(change.changePercent) < 1 && !change.areaFlag, "\(change)")
        let shown = try await daemon.cli(["exam", "report", String(third)])
        #expect(shown.status == 0 && shown.out.contains("since exam \(second)") && shown.out.contains("L1-L4"), "\(shown.out)")
        print(shown.out.split(separator: "\n").suffix(4).joined(separator: "\n"))

        // Bad requests change nothing.
        for bad: JSONValue in [.object(["exam_ids": .array([.number(Double(first))])]),
                               .object(["exam_ids": .array([.number(Double(first)), .number(999)])]),
                               .object(["exam_ids": .array([.number(Double(first)), .number(Double(second))]), "sav": .bool(true)])] {
            await #expect(throws: RPCError.self) { _ = try await daemon.call("precision.study", bad) }
        }
        #expect(try await daemon.call(.precisionList, NoParams()).studies == list.studies)

        // Another unit: the same patient's exam is not compared with the first unit's.
        daemon.child.signal(SIGTERM)
        _ = await daemon.child.waitForExit()
        try? FileManager.default.removeItem(atPath: daemon.socketPath)
        let other = try await ExamTests.patientDaemon(dir, patient: "patient", extra: ["simulator_serial = DX1-000999"])
        try await other.waitForDevice()
        // The first unit's calibration does not measure on the second: refused, nothing exposed.
        let refused = try await ExamTests.newExam(other)
        do {
            _ = try await other.call("exam.start", .object(["exam_id": .number(Double(refused))]))
            Issue.record("an exam started with another unit's calibration")
        } catch let e as RPCError {
            #expect(e.code == RPCError.notCalibratedCode && e.message.contains("made on DX-1 DX1-000123, this is DX-1 DX1-000999"), "\(e)")
        }
        let untouched = try await other.call(.examResults, ExamIDParams(examID: Int64(refused)))
        #expect(untouched.sites.allSatisfy { $0.attempt == nil && $0.status == "not_scanned" }, "\(untouched.sites)")
        // Calibrated for this unit (the simulated units share their physics: the fixture, re-serialled).
        try CalibrationFixture.install(stateDirectory: dir.file("state"), serial: "DX1-000999")
        let fourth = try await Self.spineExam(other)
        let elsewhere = try #require(try await other.call(.examResults, ExamIDParams(examID: fourth)).followUp)
        #expect(elsewhere.prior.examID == third && elsewhere.changes.isEmpty)
        #expect(elsewhere.notes.contains { $0.contains("DX1-000123") && $0.contains("DX1-000999") && $0.contains("no change given") }, "\(elsewhere.notes)")
        // And a precision study across the two units is refused.
        await #expect(throws: RPCError.self) { _ = try await other.call(.precisionStudy, PrecisionStudyParams(examIDs: [third, fourth])) }
    }
}
