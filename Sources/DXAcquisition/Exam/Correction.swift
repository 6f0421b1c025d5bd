import DXAnalysis
import Foundation

/// `exam.correct`: what the technologist asks for, in the terms of the image they look at.
/// Each request starts from the site's ROIs as they are now (an earlier correction included).
public struct CorrectionRequest: Sendable, Equatable {
    /// "The vertebra now called `from` is `to`": every name shifts with it.
    public struct Relabel: Sendable, Equatable, Codable {
        public var from: String
        public var to: String
        public init(from: String, to: String) { self.from = from; self.to = to }
    }

    /// AP spine: every disc line's y (mm), top to bottom.
    public var discLinesMM: [Double]?
    public var relabel: Relabel?
    /// AP spine: the level whose body contains this y (mm) is L4 (for a spine the analysis
    /// could not name, where there are no names to relabel).
    public var l4YMM: Double?
    /// The attempt the request was made on (its image); refused when the site's result is from
    /// another.
    public var attempt: Int?
    /// Hip: move the neck box this far along the neck (mm, + towards the trochanter).
    public var neckBoxShiftMM: Double?
    /// Lateral spine: a vertebra's six points placed by the reader.
    public struct VertebraPoints: Sendable, Equatable, Codable {
        public var vertebra: String
        /// Table mm [x, y]: the upper endplate's posterior, middle, anterior, then the lower's.
        public var points: [[Double]]
        public init(vertebra: String, points: [[Double]]) { self.vertebra = vertebra; self.points = points }
    }

    /// Lateral spine: a vertebra's grade (0–3) and type set by the reader.
    public struct VertebraGrade: Sendable, Equatable, Codable {
        public var vertebra: String
        public var grade: Int
        public var type: VertebralBody.Kind?
        public init(vertebra: String, grade: Int, type: VertebralBody.Kind? = nil) { self.vertebra = vertebra; self.grade = grade; self.type = type }
    }

    public var vertebraPoints: VertebraPoints?
    public var vertebraGrade: VertebraGrade?
    /// Lateral spine: this vertebra back to the analysis's points and grade.
    public var vertebraRestore: String?
    /// Back to the ROIs the analysis places.
    public var reset: Bool
    /// Why (on the record, the report and the audit trail).
    public var reason: String

    public init(discLinesMM: [Double]? = nil, relabel: Relabel? = nil, l4YMM: Double? = nil, neckBoxShiftMM: Double? = nil,
                vertebraPoints: VertebraPoints? = nil, vertebraGrade: VertebraGrade? = nil, vertebraRestore: String? = nil, reset: Bool = false,
                attempt: Int? = nil, reason: String) {
        self.discLinesMM = discLinesMM; self.relabel = relabel; self.l4YMM = l4YMM; self.neckBoxShiftMM = neckBoxShiftMM; self.reset = reset
        self.vertebraPoints = vertebraPoints; self.vertebraGrade = vertebraGrade; self.vertebraRestore = vertebraRestore
        self.attempt = attempt; self.reason = reason
    }

    /// The longest reason kept (a sentence or two; the record, the audit trail and the report carry it).
    public static let reasonLimit = 500

    /// Why the request itself cannot be made, whatever the scan.
    public var problem: String? {
        let reason = self.reason.trimmingCharacters(in: .whitespacesAndNewlines)
        if reason.isEmpty { return "a correction needs a reason" }
        if reason.count > Self.reasonLimit { return "the reason is \(reason.count) characters; at most \(Self.reasonLimit)" }
        if reason.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) { return "the reason has control characters" }
        let changes = [discLinesMM != nil, relabel != nil, l4YMM != nil, neckBoxShiftMM != nil, vertebraPoints != nil, vertebraGrade != nil,
                       vertebraRestore != nil]
        if reset && changes.contains(true) { return "reset goes back to the automatic ROIs: it takes no other change" }
        if !reset && !changes.contains(true) {
            return "nothing to correct: give disc lines, a relabel, L4's position, a neck box move, a vertebra's points or grade, a vertebra to restore, or reset"
        }
        if let name = vertebraRestore, vertebraPoints?.vertebra == name || vertebraGrade?.vertebra == name {
            return "\(name) cannot be restored and changed in one correction"
        }
        if relabel != nil && l4YMM != nil { return "a relabel and L4's position name the vertebrae twice: give one" }
        if let a = attempt, a < 1 { return "attempt \(a): attempts count from 1" }
        return nil
    }

    /// The request in words, for the record.
    public var words: String {
        var parts: [String] = []
        if reset { parts.append("back to the automatic ROIs") }
        if let ys = discLinesMM { parts.append("disc lines at " + ys.map { String(format: "%.1f", $0) }.joined(separator: ", ") + " mm") }
        if let r = relabel { parts.append("the vertebra called \(r.from) relabelled \(r.to)") }
        if let y = l4YMM { parts.append(String(format: "the vertebra at y %.1f mm named L4", y)) }
        if let s = neckBoxShiftMM { parts.append(String(format: "neck box moved %+.1f mm along the neck", s)) }
        if let p = vertebraPoints {
            parts.append("\(p.vertebra)'s points placed at " + p.points.map { $0.map { String(format: "%.1f", $0) }.joined(separator: " ") }.joined(separator: ", ") + " mm")
        }
        if let g = vertebraGrade { parts.append("\(g.vertebra) graded \(g.grade)" + (g.type.map { " \($0.rawValue)" } ?? "") + " by the reader") }
        if let name = vertebraRestore { parts.append("\(name) back to the analysis's points and grade") }
        return parts.joined(separator: "; ")
    }

    /// Where a lumbar or thoracic name lies in the column (L1 = 1, T12 = 0, T11 = −1 …).
    public static func levelIndex(_ name: String) -> Int? {
        guard name.count >= 2, let n = Int(name.dropFirst()), let letter = name.first else { return nil }
        switch letter {
        case "L" where (1...6).contains(n): return n
        case "T" where (1...12).contains(n): return n - 12
        default: return nil
        }
    }
}

/// One correction on the exam's record: who, when, why, what, and the site's numbers before
/// and after.
public struct CorrectionRecord: Sendable, Codable, Equatable {
    public struct ROIValue: Sendable, Codable, Equatable {
        public var name: String
        public var bmdGCm2: Double?
        public var excluded: Bool
        /// Lateral spine: the vertebra's grade (nil: not read) and type.
        public var grade: Int?
        public var type: VertebralBody.Kind?

        public enum CodingKeys: String, CodingKey {
            case name, excluded, grade, type
            case bmdGCm2 = "bmd_g_cm2"
        }

        public init(name: String, bmdGCm2: Double?, excluded: Bool, grade: Int? = nil, type: VertebralBody.Kind? = nil) {
            self.name = name; self.bmdGCm2 = bmdGCm2; self.excluded = excluded; self.grade = grade; self.type = type
        }

        /// A site's ROIs; the lateral spine's vertebrae (excluded: not read).
        static func of(_ r: SiteResult?) -> [ROIValue] {
            if let vfa = r?.vfa {
                return vfa.vertebrae.map { ROIValue(name: $0.name, bmdGCm2: nil, excluded: !$0.readable, grade: $0.grade, type: $0.kind) }
            }
            return (r?.rois ?? []).map { ROIValue(name: $0.name, bmdGCm2: $0.bmdGCm2, excluded: $0.excluded) }
        }
    }

    public var site: String
    public var attempt: Int
    public var at: String
    public var by: String
    public var reason: String
    /// What was asked, in words.
    public var change: String
    /// The correction in force after it (nil: the automatic ROIs).
    public var correction: ROICorrection?
    public var before: [ROIValue]
    public var after: [ROIValue]
    /// What else the reader of the numbers must know (a different analysis version before).
    public var note: String?

    public init(site: String, attempt: Int, at: String, by: String, reason: String, change: String, correction: ROICorrection?,
                before: [ROIValue], after: [ROIValue]) {
        self.site = site; self.attempt = attempt; self.at = at; self.by = by; self.reason = reason; self.change = change
        self.correction = correction; self.before = before; self.after = after
    }
}

extension ROICorrection {
    /// The correction `request` makes from the one in force (`self`), against the site's
    /// current result (names are resolved on it); `analyse` analyses with a candidate (the
    /// names of a relabel are those after the request's disc lines).
    func applying(_ request: CorrectionRequest, current: SiteResult?,
                  analyse: (ROICorrection) -> Result<SiteResult, SiteAnalysisError>) -> Result<ROICorrection, SiteAnalysisError> {
        if request.reset { return .success(ROICorrection()) }
        var next = self
        if let p = request.vertebraPoints { next.vfaPoints = (next.vfaPoints ?? [:]).merging([p.vertebra: p.points]) { $1 } }
        if let g = request.vertebraGrade {
            next.vfaGrades = (next.vfaGrades ?? [:]).merging([g.vertebra: ROICorrection.VFAGrade(grade: g.grade, type: g.type)]) { $1 }
        }
        if let name = request.vertebraRestore {
            guard next.vfaPoints?[name] != nil || next.vfaGrades?[name] != nil else {
                return .failure(SiteAnalysisError("\(name) has no points or grade of the reader's to restore"))
            }
            next.vfaPoints?[name] = nil
            next.vfaGrades?[name] = nil
            if next.vfaPoints?.isEmpty == true { next.vfaPoints = nil }
            if next.vfaGrades?.isEmpty == true { next.vfaGrades = nil }
        }
        if let ys = request.discLinesMM { next.discLinesMM = ys }
        if let shift = request.neckBoxShiftMM { next.neckBoxShiftMM = (next.neckBoxShiftMM ?? 0) + shift }
        if let y = request.l4YMM { next.l4YMM = y }
        if let relabel = request.relabel {
            guard let from = CorrectionRequest.levelIndex(relabel.from), let to = CorrectionRequest.levelIndex(relabel.to) else {
                return .failure(SiteAnalysisError("relabel names vertebrae T1–T12 or L1–L6, not \(relabel.from) and \(relabel.to)"))
            }
            let named: SiteResult?
            if request.discLinesMM == nil { named = current } else {
                switch analyse(next) {
                case .success(let r): named = r
                case .failure(let e): return .failure(e)
                }
            }
            guard let spine = named?.spine else { return .failure(SiteAnalysisError("there are no named vertebrae to relabel")) }
            // After the relabel the vertebra called `from` is `to`: the one now called L(4 − shift) becomes L4.
            let shift = to - from
            guard spine.vertebrae.contains(where: { CorrectionRequest.levelIndex($0.name) == from }) else {
                return .failure(SiteAnalysisError("no vertebra is called \(relabel.from) now"))
            }
            guard let newL4 = spine.vertebrae.first(where: { CorrectionRequest.levelIndex($0.name) == 4 - shift }) else {
                return .failure(SiteAnalysisError("after that relabel no vertebra in the field would be L4"))
            }
            next.l4YMM = newL4.centreYMM
        }
        return .success(next)
    }
}
