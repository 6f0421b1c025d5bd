import Foundation

/// Whether vertebral fracture assessment is indicated, by the ISCD's 2019 Official Positions
/// for adults (Shuhart et al., J Clin Densitom 2019;22:453–471; docs/analysis.md): when the
/// T-score is below −1.0 and at least one of
/// - a woman of 70 or older, a man of 80 or older;
/// - a historical height loss over 4 cm;
/// - a prior vertebral fracture the patient reports that is not documented;
/// - glucocorticoids of at least 5 mg prednisone (or equivalent) a day for at least 3 months.
/// The answers the checklist records; an answer not given is not taken as "no": the result
/// says which are missing when they could change it.
public struct VFAIndication: Sendable, Equatable, Codable {
    public var indicated: Bool
    /// The criteria met, in words ("woman aged 72", …), or why not.
    public var reasons: [String]
    /// Answers not given that could make it indicated.
    public var unanswered: [String]

    public struct Answers: Sendable, Equatable, Codable {
        public var sex: Applicability.Sex
        public var ageYears: Double
        /// Height lost since early adulthood, cm (the tallest remembered height against today's).
        public var heightLossCm: Double?
        /// A vertebral fracture the patient reports and no record documents.
        public var undocumentedVertebralFracture: Bool?
        /// Glucocorticoids: prednisone-equivalent mg a day, and for how many months.
        public var glucocorticoidMgPerDay: Double?
        public var glucocorticoidMonths: Double?

        public enum CodingKeys: String, CodingKey {
            case sex
            case ageYears = "age_years", heightLossCm = "height_loss_cm", undocumentedVertebralFracture = "undocumented_vertebral_fracture"
            case glucocorticoidMgPerDay = "glucocorticoid_mg_per_day", glucocorticoidMonths = "glucocorticoid_months"
        }

        public init(sex: Applicability.Sex, ageYears: Double, heightLossCm: Double? = nil, undocumentedVertebralFracture: Bool? = nil,
                    glucocorticoidMgPerDay: Double? = nil, glucocorticoidMonths: Double? = nil) {
            self.sex = sex; self.ageYears = ageYears; self.heightLossCm = heightLossCm
            self.undocumentedVertebralFracture = undocumentedVertebralFracture
            self.glucocorticoidMgPerDay = glucocorticoidMgPerDay; self.glucocorticoidMonths = glucocorticoidMonths
        }
    }

    /// The T-score at or above which VFA is not indicated, and the criteria's limits.
    public static let tScoreBelow = -1.0
    public static let womanAge = 70.0, manAge = 80.0
    public static let heightLossOverCm = 4.0
    public static let glucocorticoidMg = 5.0, glucocorticoidMonths = 3.0

    /// `tScore`: the lowest T-score of the exam (nil when none could be computed).
    public static func evaluate(tScore: Double?, _ a: Answers) -> VFAIndication {
        guard let tScore, tScore.isFinite else {
            return VFAIndication(indicated: false, reasons: ["no T-score: the indication cannot be judged"], unanswered: [])
        }
        guard tScore < tScoreBelow else {
            return VFAIndication(indicated: false, reasons: [String(format: "T-score %.1f is not below %.1f", tScore, tScoreBelow)], unanswered: [])
        }
        var met: [String] = [], missing: [String] = []
        switch a.sex {
        case .female where a.ageYears >= womanAge: met.append(String(format: "woman aged %.0f (70 or older)", a.ageYears.rounded(.down)))
        case .male where a.ageYears >= manAge: met.append(String(format: "man aged %.0f (80 or older)", a.ageYears.rounded(.down)))
        default: break
        }
        if let h = a.heightLossCm { if h > heightLossOverCm { met.append(String(format: "height loss %.1f cm (over 4 cm)", h)) } }
        else { missing.append("historical height loss") }
        if let f = a.undocumentedVertebralFracture { if f { met.append("a vertebral fracture reported, not documented") } }
        else { missing.append("a vertebral fracture reported but not documented") }
        if let mg = a.glucocorticoidMgPerDay, let months = a.glucocorticoidMonths {
            if mg >= glucocorticoidMg && months >= glucocorticoidMonths {
                met.append(String(format: "glucocorticoids %.1f mg/day for %.0f months", mg, months))
            }
        } else if (a.glucocorticoidMgPerDay ?? glucocorticoidMg) >= glucocorticoidMg && (a.glucocorticoidMonths ?? glucocorticoidMonths) >= glucocorticoidMonths {
            // Only when the answer given does not already rule it out.
            missing.append("glucocorticoid dose and duration")
        }
        let t = String(format: "T-score %.1f below %.1f", tScore, tScoreBelow)
        if met.isEmpty { return VFAIndication(indicated: false, reasons: [t + ", but none of the other criteria met"], unanswered: missing) }
        return VFAIndication(indicated: true, reasons: [t] + met, unanswered: [])
    }
}
