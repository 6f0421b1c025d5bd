@testable import DXClinical
import Testing

/// The ISCD 2019 indications for VFA, case by case and at their limits.
@Suite("VFA indication")
struct VFAIndicationTests {
    typealias A = VFAIndication.Answers

    @Test func theTScoreComesFirst() {
        let old = A(sex: .female, ageYears: 80, heightLossCm: 6, undocumentedVertebralFracture: true, glucocorticoidMgPerDay: 10, glucocorticoidMonths: 12)
        #expect(!VFAIndication.evaluate(tScore: -1.0, old).indicated)   // not below −1.0
        #expect(VFAIndication.evaluate(tScore: -1.1, old).indicated)
        #expect(!VFAIndication.evaluate(tScore: nil, old).indicated)
    }

    @Test func eachCriterionAtItsLimit() {
        let none = A(sex: .female, ageYears: 60, heightLossCm: 0, undocumentedVertebralFracture: false, glucocorticoidMgPerDay: 0, glucocorticoidMonths: 0)
        #expect(!VFAIndication.evaluate(tScore: -2, none).indicated)
        #expect(VFAIndication.evaluate(tScore: -2, A(sex: .female, ageYears: 70, heightLossCm: 0, undocumentedVertebralFracture: false, glucocorticoidMgPerDay: 0, glucocorticoidMonths: 0)).indicated)
        #expect(!VFAIndication.evaluate(tScore: -2, A(sex: .female, ageYears: 69.9, heightLossCm: 0, undocumentedVertebralFracture: false, glucocorticoidMgPerDay: 0, glucocorticoidMonths: 0)).indicated)
        #expect(!VFAIndication.evaluate(tScore: -2, A(sex: .male, ageYears: 79.9, heightLossCm: 0, undocumentedVertebralFracture: false, glucocorticoidMgPerDay: 0, glucocorticoidMonths: 0)).indicated)
        #expect(VFAIndication.evaluate(tScore: -2, A(sex: .male, ageYears: 80, heightLossCm: 0, undocumentedVertebralFracture: false, glucocorticoidMgPerDay: 0, glucocorticoidMonths: 0)).indicated)
        var h = none; h.heightLossCm = 4.0
        #expect(!VFAIndication.evaluate(tScore: -2, h).indicated)   // over 4 cm, not 4
        h.heightLossCm = 4.1
        #expect(VFAIndication.evaluate(tScore: -2, h).indicated)
        var f = none; f.undocumentedVertebralFracture = true
        #expect(VFAIndication.evaluate(tScore: -2, f).indicated)
        var g = none; g.glucocorticoidMgPerDay = 5; g.glucocorticoidMonths = 3
        #expect(VFAIndication.evaluate(tScore: -2, g).indicated)
        g.glucocorticoidMonths = 2.9
        #expect(!VFAIndication.evaluate(tScore: -2, g).indicated)
        g.glucocorticoidMgPerDay = 4.9; g.glucocorticoidMonths = 12
        #expect(!VFAIndication.evaluate(tScore: -2, g).indicated)
    }

    /// An answer not given is not a "no": the result names it.
    @Test func unansweredQuestionsAreNamed() {
        let r = VFAIndication.evaluate(tScore: -1.8, A(sex: .female, ageYears: 62))
        #expect(!r.indicated)
        #expect(r.unanswered.count == 3, "\(r.unanswered)")
        let yes = VFAIndication.evaluate(tScore: -2.6, A(sex: .female, ageYears: 74, heightLossCm: 5))
        #expect(yes.indicated && yes.reasons.contains { $0.contains("aged 74") } && yes.reasons.contains { $0.contains("5.0 cm") })
    }
}
