@testable import DXAcquisition
import Foundation
import Testing

/// The checklist's rules, one by one (docs/exam.md).
@Suite("Pre-scan checklist")
struct ChecklistTests {
    static let today = CalendarDay("2026-11-23")!

    /// Everything answered and nothing in the way.
    static var clear: ChecklistAnswers {
        var a = ChecklistAnswers()
        a.pregnancy = .no
        a.contrast = .noStudy
        a.nuclearMedicine = .noStudy
        a.recentFracture = []
        a.metal = []
        a.jewelleryRemoved = true
        a.heightCm = 165
        a.weightKg = 70
        a.measuredToday = true
        a.identityConfirmed = true
        a.referralConfirmed = true
        return a
    }

    @Test func aClearChecklistIsCompleteWithTheStandardPlan() {
        let s = Checklist.evaluate(Self.clear, sex: .female, today: Self.today)
        #expect(s.complete)
        #expect(s.plan == [.apSpine, .leftHip, .rightHip, .lateralSpine])
        #expect(s.bmi == 25.7)
        #expect(s.blocks.isEmpty && s.missing.isEmpty)
    }

    @Test func nothingAnsweredListsEveryItem() {
        let s = Checklist.evaluate(ChecklistAnswers(), sex: .female, today: Self.today)
        #expect(!s.complete)
        for item in ["pregnancy", "contrast", "nuclear_medicine", "recent_fracture", "metal", "jewellery_removed", "height_cm", "weight_kg",
                     "identity_confirmed", "referral_confirmed"] {
            #expect(s.missing.contains { $0.hasPrefix(item) }, "\(item) not listed as missing: \(s.missing)")
        }
        // A man is not asked about pregnancy.
        #expect(!Checklist.evaluate(ChecklistAnswers(), sex: .male, today: Self.today).missing.contains("pregnancy"))
    }

    @Test(arguments: [ChecklistAnswers.Pregnancy.yes, .unknown])
    func pregnancyBlocks(_ answer: ChecklistAnswers.Pregnancy) {
        var a = Self.clear
        a.pregnancy = answer
        let s = Checklist.evaluate(a, sex: .female, today: Self.today)
        #expect(!s.complete)
        #expect(s.blocks.map(\.item) == ["pregnancy"])
        #expect(s.blocks.first?.reason.contains(answer == .yes ? "after delivery" : "excluded") == true)
    }

    @Test func contrastTenDaysAgoBlocksAndNamesTheEarliestDate() {
        var a = Self.clear
        a.contrast = .on(CalendarDay("2026-11-13")!)
        let s = Checklist.evaluate(a, sex: .female, today: Self.today)
        #expect(!s.complete)
        #expect(s.blocks.first?.earliestDate == "2026-11-27")
        #expect(s.blocks.first?.reason.contains("10 days ago") == true)
        // Fourteen days on, it no longer blocks; a nuclear study counts the same way.
        a.contrast = .on(CalendarDay("2026-11-09")!)
        #expect(Checklist.evaluate(a, sex: .female, today: Self.today).complete)
        a.nuclearMedicine = .on(CalendarDay("2026-11-20")!)
        #expect(Checklist.evaluate(a, sex: .female, today: Self.today).blocks.first?.earliestDate == "2026-12-04")
        // A date in the future is an error to check, not a pass.
        a.nuclearMedicine = .on(CalendarDay("2026-12-01")!)
        #expect(!Checklist.evaluate(a, sex: .female, today: Self.today).complete)
    }

    @Test func metalInTheLeftHipMeansTheRightHipAndAFinding() {
        var a = Self.clear
        a.metal = [.leftHip]
        let s = Checklist.evaluate(a, sex: .female, today: Self.today)
        #expect(s.complete)
        #expect(s.plan == [.apSpine, .rightHip, .lateralSpine])
        #expect(s.findings == ["metal in the left hip: not measured; the right hip is measured instead"])
        // Metal in both hips: neither, and both noted; a recent fracture of the spine skips it.
        a.metal = [.leftHip, .rightHip]
        a.recentFracture = [.apSpine]
        let both = Checklist.evaluate(a, sex: .female, today: Self.today)
        #expect(both.plan == [.lateralSpine])
        #expect(both.findings.count == 3)
    }

    @Test func overTheTableLimitBlocks() {
        var a = Self.clear
        a.weightKg = 210
        let s = Checklist.evaluate(a, sex: .male, today: Self.today)
        #expect(s.blocks.map(\.item) == ["weight_kg"])
        #expect(Checklist.evaluate(a, sex: .male, today: Self.today, weightLimitKg: 227).complete)
        // Height and weight from another day do not count.
        a.weightKg = 70
        a.measuredToday = false
        #expect(!Checklist.evaluate(a, sex: .male, today: Self.today).complete)
    }

    @Test func jewelleryAndConfirmationsMustBeYes() {
        for keyPath in [\ChecklistAnswers.jewelleryRemoved, \.identityConfirmed, \.referralConfirmed] {
            var a = Self.clear
            a[keyPath: keyPath] = false
            #expect(!Checklist.evaluate(a, sex: .female, today: Self.today).complete)
        }
    }

    @Test func answersOfTheWrongTypeDoNotDecode() {
        for bad in [#"{"pregnancy": "maybe"}"#, #"{"contrast": "last week"}"#, #"{"height_cm": "tall"}"#, #"{"metal": ["knee"]}"#,
                    #"{"contrast": "2026-02-30"}"#, #"{"jewellery_removed": "yes"}"#] {
            #expect(throws: (any Error).self, "\(bad)") { try JSONDecoder().decode(ChecklistAnswers.self, from: Data(bad.utf8)) }
        }
        var a = ChecklistAnswers()
        a.heightCm = 400
        #expect(a.problem != nil)
    }
}

/// The VFA questions: asked, never required, carried to the results, where with the lowest
/// T-score they say whether VFA is indicated (ISCD 2019, `VFAIndication`).
@Suite("VFA questions in the exam")
struct VFAQuestionTests {
    @Test func theQuestionsAreOptionalAndCarried() {
        var a = ChecklistTests.clear
        let s = Checklist.evaluate(a, sex: .female, today: ChecklistTests.today)
        #expect(s.complete && s.vfaQuestions?.heightLossCm == nil)
        a.heightLossCm = 5
        a.undocumentedVertebralFracture = false
        #expect(Checklist.evaluate(a, sex: .female, today: ChecklistTests.today).vfaQuestions?.heightLossCm == 5)
        a.heightLossCm = 80
        #expect(a.problem == "height_loss_cm must be 0 to 60, not 80.0")
        a.heightLossCm = nil
        a.glucocorticoidMonths = -1
        #expect(a.problem?.hasPrefix("glucocorticoid_months") == true)
    }

    /// A woman born 1950, scanned in 2026 (76): T-score −2.0 at the spine is below −1.0 and her
    /// age meets the criterion; at +0.5 it is not indicated; a man of the same age needs
    /// another criterion (height loss 5 cm).
    @Test func theResultsSayWhetherVFAIsIndicated() {
        func results(_ bmd: Double, sex: PatientRecord.Sex, heightLoss: Double? = nil) -> ExamResults {
            var exam = FollowUpTests.exam(1, date: "2026-06-01", [(.apSpine, FollowUpTests.spine(bmd))])
            exam.patient.sex = sex
            var a = ChecklistTests.clear
            a.heightLossCm = heightLoss
            exam.checklist = Checklist.evaluate(a, sex: sex, today: ChecklistTests.today)
            exam.attempts[0].analysis?.rois[0].tScore = (bmd - 1.0) / 0.1
            return ExamResults(exam)
        }
        let low = results(0.8, sex: .female)
        #expect(low.diagnosis.tScore == -2.0)
        #expect(low.vfaIndication?.indicated == true && low.vfaIndication?.reasons.contains { $0.contains("woman aged 76") } == true,
                "\(String(describing: low.vfaIndication))")
        #expect(results(1.05, sex: .female).vfaIndication?.indicated == false)
        let man = results(0.8, sex: .male)
        #expect(man.vfaIndication?.indicated == false && man.vfaIndication?.unanswered.contains("historical height loss") == true)
        #expect(results(0.8, sex: .male, heightLoss: 5).vfaIndication?.indicated == true)
    }
}

/// What the hospital's systems are told besides the numbers: every attempt that exposed the
/// patient (the dose report's irradiation events), who ran the exam, and why it was aborted.
@Suite("Exam results for the RIS")
struct ExamResultsForTheRISTests {
    @Test func everyExposingAttemptIsAnExposureAndAnAbortKeepsItsWords() {
        var exam = FollowUpTests.exam(1, date: "2026-06-01", [(.apSpine, FollowUpTests.spine(0.9))])
        exam.attempts[0].dose = ScanDose(scans: 5, exposureMs: 200_000, dapMGyCm2: 6.0)
        var moved = exam.attempts[0]
        moved.attempt = 2
        moved.status = .motion
        moved.dose = ScanDose(scans: 2, exposureMs: 30_000, dapMGyCm2: 0.4, estimated: true)
        var skipped = exam.attempts[0]
        skipped.site = .leftHip
        skipped.status = .skipped
        skipped.dose = ScanDose()
        exam.attempts += [moved, skipped]
        var r = ExamResults(exam)
        #expect(r.exposures.map { "\($0.site) \($0.attempt) \($0.status) \($0.dose.dapMGyCm2)" } == ["ap_spine 1 completed 6.0", "ap_spine 2 motion 0.4"],
                "a skipped site exposed nothing")
        #expect(r.operatorName == "o" && r.abortReason == nil)
        exam.state = .aborted
        exam.endedAt = "2026-06-01T09:20:00Z"
        exam.warnings = [ExamWarning(kind: .aborted, message: "exam aborted: patient unwell")]
        r = ExamResults(exam)
        #expect(r.abortReason == "patient unwell" && r.endedAt == "2026-06-01T09:20:00Z")
        // Results published before these were kept read as none.
        var json = String(decoding: (try? JSONEncoder().encode(r)) ?? Data(), as: UTF8.self)
        for key in ["\"exposures\"", "\"abort_reason\"", "\"operator\"", "\"ended_at\""] { #expect(json.contains(key)) }
        json = json.replacingOccurrences(of: "\"exposures\":", with: "\"x_exposures\":")
        #expect((try? JSONDecoder().decode(ExamResults.self, from: Data(json.utf8)))?.exposures == [])
    }
}
