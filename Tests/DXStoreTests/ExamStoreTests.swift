import DXAcquisition
import DXAnalysis
import DXProtocol
import DXStore
import DXTestSupport
import Foundation
import Testing

/// The exam store on its own: schema, answers with who and when, attempts, reopening.
@Suite("Exam store")
struct ExamStoreTests {
    static let patient = PatientRecord(id: "P-1", name: "Test Patient", sex: .female, birthDate: "1950-01-02")

    @Test func answersAttemptsAndWarningsSurviveReopening() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("exams.sqlite")
        var id: Int64 = 0, row: Int64 = 0
        do {
            let store = try ExamStore(path: path)
            id = try store.createExam(patient: Self.patient, referral: "screening", operatorName: "tech1", plan: Site.standardOrder, at: Date())
            var a = ChecklistAnswers()
            a.pregnancy = .unknown
            try store.recordAnswers(examID: id, answers: a, by: "tech1", at: Date(timeIntervalSince1970: 1_000))
            a = ChecklistAnswers()
            a.pregnancy = .no
            a.heightCm = 160
            try store.recordAnswers(examID: id, answers: a, by: "tech2", at: Date(timeIntervalSince1970: 2_000))
            row = try store.beginAttempt(examID: id, attempt: SiteAttempt(site: .apSpine, attempt: 1, status: .running, plannedLines: 220))
            try store.updateAttempt(row: row, lines: 57, capture: "/x.dxcap", scanID: 42)
            try store.addWarning(examID: id, attemptRow: row, warning: ExamWarning(kind: .stall, message: "no line", line: 57, value: 3.1), at: Date())
            try store.setState(examID: id, state: .inProgress, at: Date())
        }
        // Reopened (as after a restart): the latest answers, the attempt still running with its lines.
        let store = try ExamStore(path: path)
        let answers = try store.answers(examID: id)
        #expect(answers.pregnancy == .no)
        #expect(answers.heightCm == 160)
        let running = try store.runningAttempts()
        #expect(running.count == 1)
        #expect(running.first?.attempt.lines == 57)
        #expect(running.first?.attempt.capture == "/x.dxcap")
        #expect(running.first?.attempt.scanID == 42)
        let exam = try #require(try store.exam(id))
        #expect(exam.state == .inProgress)
        #expect(exam.attempts.first?.warnings.first?.kind == .stall)
        #expect(exam.patient == Self.patient)
        #expect(try store.exam(999) == nil)
    }

    /// An abort's cause is kept with the exam's end and its warning, and read back after a
    /// restart; an abort with no cause chosen keeps none (the words then decide the RIS's
    /// code); an exam that was not aborted has none.
    @Test func anAbortsCauseSurvivesReopening() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("exams.sqlite")
        var aborted: Int64 = 0, uncaused: Int64 = 0, completed: Int64 = 0
        do {
            let store = try ExamStore(path: path)
            aborted = try store.createExam(patient: Self.patient, referral: "r", operatorName: "t", plan: [.apSpine], at: Date())
            uncaused = try store.createExam(patient: Self.patient, referral: "r", operatorName: "t", plan: [.apSpine], at: Date())
            completed = try store.createExam(patient: Self.patient, referral: "r", operatorName: "t", plan: [.apSpine], at: Date())
            #expect(try store.setAborted(examID: aborted, cause: .wrongWorklistEntry, warning: ExamWarning(kind: .aborted, message: "exam aborted: wrong order"),
                                         at: Date(timeIntervalSince1970: 1_800_000_000)))
            #expect(try store.setAborted(examID: uncaused, cause: nil, warning: ExamWarning(kind: .aborted, message: "exam aborted: tube arc fault"), at: Date()))
            try store.setState(examID: completed, state: .completed, at: Date())
        }
        let store = try ExamStore(path: path)
        let a = try #require(try store.exam(aborted))
        #expect(a.state == .aborted && a.abortCause == .wrongWorklistEntry && a.endedAt == Date(timeIntervalSince1970: 1_800_000_000))
        #expect(a.warnings.map(\.message) == ["exam aborted: wrong order"])
        let u = try #require(try store.exam(uncaused))
        #expect(u.state == .aborted && u.abortCause == nil)
        #expect(try store.exam(completed)?.abortCause == nil)
    }

    /// An abort that comes after the exam ended (its last step completed it while X-rays
    /// were being turned off) changes nothing: the completed record stays, with no warning.
    @Test func anAbortAfterTheEndChangesNothing() throws {
        let dir = TemporaryDirectory()
        let store = try ExamStore(path: dir.file("exams.sqlite"))
        let id = try store.createExam(patient: Self.patient, referral: "r", operatorName: "t", plan: [.apSpine], at: Date())
        let ended = Date(timeIntervalSince1970: 1_800_000_000)
        try store.setState(examID: id, state: .completed, at: ended)
        #expect(try store.setAborted(examID: id, cause: .patientRefused, warning: ExamWarning(kind: .aborted, message: "exam aborted: late"), at: Date()) == false)
        let e = try #require(try store.exam(id))
        #expect(e.state == .completed && e.endedAt == ended && e.abortCause == nil && e.warnings.isEmpty)
        #expect(try store.setAborted(examID: 999, cause: nil, warning: ExamWarning(kind: .aborted, message: "x"), at: Date()) == false)
    }

    @Test func everyAnswerIsKeptWithWhoAndWhen() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("exams.sqlite")
        let store = try ExamStore(path: path)
        let id = try store.createExam(patient: Self.patient, referral: "r", operatorName: "t", plan: [.apSpine], at: Date())
        var a = ChecklistAnswers()
        a.jewelleryRemoved = true
        a.metal = [.leftHip]
        try store.recordAnswers(examID: id, answers: a, by: "alice", at: Date(timeIntervalSince1970: 1_700_000_000))
        // Read the table as an auditor would, with the sqlite3 library underneath GRDB.
        let rows = try store.answerHistory(examID: id)
        #expect(rows.map(\.item).sorted() == ["jewellery_removed", "metal"])
        #expect(rows.allSatisfy { $0.by == "alice" && $0.at == Date(timeIntervalSince1970: 1_700_000_000) })
        #expect(rows.first { $0.item == "metal" }?.value == #"["left_hip"]"#)
    }

    @Test func aDamagedDatabaseIsAClearError() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("exams.sqlite")
        try Data("this is not a database, it is a text file of some length".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: (any Error).self) { try ExamStore(path: path) }
    }
}

/// A site's analysis is stored with its attempt and comes back after a restart; one this
/// version cannot read is reported, not fatal.
@Suite("Exam store: analyses")
struct ExamStoreAnalysisTests {
    @Test func theSiteAnalysisSurvivesReopening() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("exams.sqlite")
        let result = SiteResult(site: "ap_spine", rois: [ClinicalROI(name: "L1-L4", bmdGCm2: 0.912, bmcG: 50.1, areaCm2: 54.9, tScore: -1.3,
                                                                     vertebraeUsed: ["L1", "L2", "L4"])],
                                warnings: [AnalysisWarning(code: "spine_tilted", message: "tilted", value: 6.1, unit: "deg")],
                                interpretation: nil, reference: "NHANES test", analysisVersion: "test", spine: nil)
        var id: Int64 = 0
        do {
            let store = try ExamStore(path: path)
            id = try store.createExam(patient: ExamStoreTests.patient, referral: "screening", operatorName: "tech1", plan: Site.standardOrder, at: Date())
            let spine = try store.beginAttempt(examID: id, attempt: SiteAttempt(site: .apSpine, attempt: 1, status: .running, plannedLines: 220))
            var a = SiteAttempt(site: .apSpine, attempt: 1, status: .completed, plannedLines: 220, lines: 220)
            a.analysis = result
            try store.finishAttempt(row: spine, attempt: a)
            let hip = try store.beginAttempt(examID: id, attempt: SiteAttempt(site: .leftHip, attempt: 1, status: .running, plannedLines: 150))
            var h = SiteAttempt(site: .leftHip, attempt: 1, status: .completed, plannedLines: 150, lines: 150)
            h.analysisNote = "not analysed"
            try store.finishAttempt(row: hip, attempt: h)
        }
        let store = try ExamStore(path: path)
        let exam = try #require(try store.exam(id))
        #expect(exam.attempts.first { $0.site == .apSpine }?.analysis == result)
        #expect(exam.attempts.first { $0.site == .leftHip }?.analysisNote == "not analysed")
    }

    /// The prior exam is the patient's latest earlier one with an analysed scan (not a later
    /// one, not another patient's, not one without results); each attempt keeps its device;
    /// precision studies are kept with who and when, the latest per device and ROI in force.
    @Test func priorExamsDevicesAndPrecision() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("exams.sqlite")
        let result = SiteResult(site: "ap_spine", rois: [ClinicalROI(name: "L1-L4", bmdGCm2: 0.9, bmcG: 50, areaCm2: 55)],
                                warnings: [], interpretation: nil, reference: "test", analysisVersion: "test", spine: nil)
        let other = PatientRecord(id: "P-2", name: "Other Patient", sex: .male, birthDate: "1948-05-06")
        func exam(_ patient: PatientRecord, analysed: Bool, device: String = "DX-1 A", in store: ExamStore) throws -> Int64 {
            let id = try store.createExam(patient: patient, referral: "r", operatorName: "t", plan: [.apSpine], at: Date())
            var a = SiteAttempt(site: .apSpine, attempt: 1, status: .running, plannedLines: 220)
            a.device = device
            let row = try store.beginAttempt(examID: id, attempt: a)
            a.status = .completed
            a.analysis = analysed ? result : nil
            try store.finishAttempt(row: row, attempt: a)
            return id
        }
        let store = try ExamStore(path: path)
        let first = try exam(ExamStoreTests.patient, analysed: true, in: store)
        _ = try exam(other, analysed: true, in: store)
        let unanalysed = try exam(ExamStoreTests.patient, analysed: false, in: store)
        let current = try exam(ExamStoreTests.patient, analysed: true, device: "DX-1 B", in: store)
        _ = try exam(ExamStoreTests.patient, analysed: true, in: store)
        #expect(try store.priorExam(patientID: "P-1", before: current)?.id == first)
        #expect(try store.priorExam(patientID: "P-1", before: unanalysed)?.id == first)
        #expect(try store.priorExam(patientID: "P-1", before: first) == nil)
        #expect(try store.exam(current)?.attempts.first?.device == "DX-1 B")

        func record(_ device: String, _ roi: String, sd: Double) -> PrecisionRecord {
            PrecisionRecord(device: device, roi: roi, patients: 15, degreesOfFreedom: 30, rmsSDGCm2: sd, rmsCVPercent: 1, lscGCm2: 2.77 * sd,
                            lscPercent: 2.77, meetsISCD: true, acceptable: true, exams: [1, 2])
        }
        try store.savePrecision([record("DX-1 A", "L1-L4", sd: 0.02), record("DX-1 A", "neck", sd: 0.03)], by: "tech1", at: Date(timeIntervalSince1970: 1_000))
        try store.savePrecision([record("DX-1 A", "L1-L4", sd: 0.01), record("DX-1 B", "L1-L4", sd: 0.04)], by: "tech2", at: Date(timeIntervalSince1970: 2_000))
        let reopened = try ExamStore(path: path)
        let a = try reopened.precision(device: "DX-1 A")
        #expect(a.map(\.roi) == ["neck", "L1-L4"] || a.map(\.roi) == ["L1-L4", "neck"])
        #expect(a.first { $0.roi == "L1-L4" }?.rmsSDGCm2 == 0.01 && a.first { $0.roi == "L1-L4" }?.createdBy == "tech2")
        #expect(a.first { $0.roi == "neck" }?.createdBy == "tech1" && a.first { $0.roi == "neck" }?.createdAt?.hasPrefix("1970-01-01") == true)
        #expect(try reopened.precision(device: nil).count == 3)
        #expect(try reopened.precision(device: "DX-1 C").isEmpty)
    }
}
