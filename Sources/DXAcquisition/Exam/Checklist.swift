import Foundation

/// The pre-scan checklist's answers, each optional until given. Sent piecemeal
/// (`exam.checklist` with any subset); each answer is recorded with who gave it and when.
public struct ChecklistAnswers: Sendable, Codable, Equatable {
    public enum Pregnancy: String, Sendable, Codable { case no, yes, unknown }
    /// `none`, or the date of the last such study.
    public enum RecentStudy: Sendable, Codable, Equatable {
        case noStudy
        case on(CalendarDay)

        public init(from decoder: any Decoder) throws {
            let text = try decoder.singleValueContainer().decode(String.self)
            if text == "none" { self = .noStudy; return }
            guard let d = CalendarDay(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\"none\" or a date YYYY-MM-DD, not \(text)"))
            }
            self = .on(d)
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .noStudy: try c.encode("none")
            case .on(let d): try c.encode(d.description)
            }
        }
    }

    public var pregnancy: Pregnancy?
    public var contrast: RecentStudy?
    public var nuclearMedicine: RecentStudy?
    /// Sites with a recent fracture, and sites with metal (screws, a prosthesis); [] for none.
    public var recentFracture: [Site]?
    public var metal: [Site]?
    public var jewelleryRemoved: Bool?
    public var heightCm: Double?
    public var weightKg: Double?
    public var measuredToday: Bool?
    public var identityConfirmed: Bool?
    public var referralConfirmed: Bool?
    /// For the VFA indication (ISCD 2019, `VFAIndication`); never required to start.
    public var heightLossCm: Double?
    public var undocumentedVertebralFracture: Bool?
    public var glucocorticoidMgPerDay: Double?
    public var glucocorticoidMonths: Double?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case pregnancy, contrast, metal
        case nuclearMedicine = "nuclear_medicine", recentFracture = "recent_fracture", jewelleryRemoved = "jewellery_removed"
        case heightCm = "height_cm", weightKg = "weight_kg", measuredToday = "measured_today"
        case identityConfirmed = "identity_confirmed", referralConfirmed = "referral_confirmed"
        case heightLossCm = "height_loss_cm", undocumentedVertebralFracture = "undocumented_vertebral_fracture"
        case glucocorticoidMgPerDay = "glucocorticoid_mg_per_day", glucocorticoidMonths = "glucocorticoid_months"
    }

    public init() {}

    /// Values no one can have measured (the message names the field).
    public var problem: String? {
        if let h = heightCm, !(50...250).contains(h) { return "height_cm must be 50 to 250, not \(h)" }
        if let w = weightKg, !(10...400).contains(w) { return "weight_kg must be 10 to 400, not \(w)" }
        if let l = heightLossCm, !(0...60).contains(l) { return "height_loss_cm must be 0 to 60, not \(l)" }
        if let d = glucocorticoidMgPerDay, !(0...2000).contains(d) { return "glucocorticoid_mg_per_day must be 0 to 2000, not \(d)" }
        if let m = glucocorticoidMonths, !(0...1200).contains(m) { return "glucocorticoid_months must be 0 to 1200, not \(m)" }
        return nil
    }
}

/// What the checklist says: whether the exam may start, what is missing, what blocks it and
/// until when, the sites to scan and the findings to carry into the results.
public struct ChecklistStatus: Sendable, Codable, Equatable {
    public struct Block: Sendable, Codable, Equatable {
        public var item: String
        public var reason: String
        /// When the exam can take place, where a date is known.
        public var earliestDate: String?
        public enum CodingKeys: String, CodingKey { case item, reason; case earliestDate = "earliest_date" }
    }
    public var complete: Bool
    public var missing: [String]
    public var blocks: [Block]
    public var plan: [Site]
    public var findings: [String]
    public var bmi: Double?
    /// The answers the VFA indication needs (`VFAIndication`), as given.
    public var vfaQuestions: VFAQuestions?

    public struct VFAQuestions: Sendable, Codable, Equatable {
        public var heightLossCm: Double?
        public var undocumentedVertebralFracture: Bool?
        public var glucocorticoidMgPerDay: Double?
        public var glucocorticoidMonths: Double?
        public enum CodingKeys: String, CodingKey {
            case heightLossCm = "height_loss_cm", undocumentedVertebralFracture = "undocumented_vertebral_fracture"
            case glucocorticoidMgPerDay = "glucocorticoid_mg_per_day", glucocorticoidMonths = "glucocorticoid_months"
        }
    }

    public enum CodingKeys: String, CodingKey { case complete, missing, blocks, plan, findings, bmi; case vfaQuestions = "vfa_questions" }

    public static let empty = ChecklistStatus(complete: false, missing: [], blocks: [], plan: Site.standardOrder, findings: [], bmi: nil)
}

/// The checklist's rules (docs/exam.md): a pure function of the answers, the patient, the day
/// and the table's weight limit.
public enum Checklist {
    public static let contrastWashoutDays = 14

    public static func evaluate(_ a: ChecklistAnswers, sex: PatientRecord.Sex, today: CalendarDay,
                                weightLimitKg: Double = 204) -> ChecklistStatus {
        var missing: [String] = [], blocks: [ChecklistStatus.Block] = [], findings: [String] = []
        // Pregnancy: asked of every woman; yes postpones until after delivery, unknown until
        // it is excluded.
        switch (sex, a.pregnancy) {
        case (.female, nil): missing.append("pregnancy")
        case (_, .yes?): blocks.append(.init(item: "pregnancy", reason: "pregnant: the exam is postponed until after delivery"))
        case (_, .unknown?): blocks.append(.init(item: "pregnancy", reason: "pregnancy not excluded: the exam waits until it is"))
        default: break
        }
        // Contrast agents and nuclear medicine studies distort the attenuation for 14 days.
        for (item, answer, what) in [("contrast", a.contrast, "a contrast agent study"), ("nuclear_medicine", a.nuclearMedicine, "a nuclear medicine study")] {
            switch answer {
            case nil: missing.append(item)
            case .noStudy?: break
            case .on(let day)?:
                let earliest = day.adding(days: contrastWashoutDays)
                if day > today {
                    blocks.append(.init(item: item, reason: "\(what) dated \(day) lies in the future: check the date", earliestDate: nil))
                } else if earliest > today {
                    blocks.append(.init(item: item, reason: "\(what) on \(day), \(day.days(until: today)) days ago: the exam can take place from \(earliest)",
                                        earliestDate: earliest.description))
                }
            }
        }
        // Sites with metal or a recent fracture are not measured; a hip is swapped for the
        // other one (which the standard exam scans anyway), and the finding is carried.
        var plan = Site.standardOrder
        if a.recentFracture == nil { missing.append("recent_fracture") }
        if a.metal == nil { missing.append("metal") }
        for (list, what) in [(a.metal ?? [], "metal"), (a.recentFracture ?? [], "a recent fracture")] {
            for site in list where plan.contains(site) && site != .lateralSpine {
                plan.removeAll { $0 == site }
                if let other = site.otherHip, !(a.metal ?? []).contains(other), !(a.recentFracture ?? []).contains(other) {
                    findings.append("\(what) in the \(site.title): not measured; the \(other.title) is measured instead")
                } else {
                    findings.append("\(what) in the \(site.title): not measured")
                }
            }
            for site in list where site == .lateralSpine { findings.append("\(what) in the spine (lateral view): noted") }
        }
        if a.jewelleryRemoved != true { missing.append(a.jewelleryRemoved == nil ? "jewellery_removed" : "jewellery_removed (necklaces and navel piercing must be removed)") }
        var bmi: Double?
        if let h = a.heightCm, let w = a.weightKg, a.measuredToday == true {
            bmi = ((w / ((h / 100) * (h / 100))) * 10).rounded() / 10
            if w > weightLimitKg {
                blocks.append(.init(item: "weight_kg", reason: "\(w) kg is over the table's limit of \(weightLimitKg) kg"))
            }
        } else {
            if a.heightCm == nil { missing.append("height_cm") }
            if a.weightKg == nil { missing.append("weight_kg") }
            if a.measuredToday != true { missing.append("measured_today (height and weight are measured on the day)") }
        }
        if a.identityConfirmed != true { missing.append("identity_confirmed") }
        if a.referralConfirmed != true { missing.append("referral_confirmed") }
        var status = ChecklistStatus(complete: missing.isEmpty && blocks.isEmpty, missing: missing, blocks: blocks, plan: plan,
                                     findings: findings, bmi: bmi)
        status.vfaQuestions = .init(heightLossCm: a.heightLossCm, undocumentedVertebralFracture: a.undocumentedVertebralFracture,
                                    glucocorticoidMgPerDay: a.glucocorticoidMgPerDay, glucocorticoidMonths: a.glucocorticoidMonths)
        return status
    }
}
