import Foundation

/// A technologist's correction of the automatic ROIs, applied on top of the automatic
/// analysis of the same decomposed scan (ISCD: the operator checks every ROI and corrects its
/// placement where the software erred; docs/analysis.md). Stored with the site's result, so
/// that the numbers can be made again from the scan, and each change is on the exam's record
/// with who made it, when, why, and the numbers before and after.
public struct ROICorrection: Sendable, Codable, Equatable {
    /// AP spine: every disc line's y on the table (mm), top to bottom, in place of the ones
    /// found. A line within `nearestDiscMM` of a found one keeps that one's slope.
    public var discLinesMM: [Double]?
    /// AP spine: the level whose body contains this y (mm) is L4, whatever the crests and the
    /// ribs say (a transitional vertebra, a cue misread).
    public var l4YMM: Double?
    /// Hip: the neck box moved along the neck's axis from where the analysis places it (mm;
    /// positive towards the trochanter, negative towards the head).
    public var neckBoxShiftMM: Double?
    /// Lateral spine: vertebrae's six points placed by the reader, by name (table mm [x, y]:
    /// the upper endplate's posterior, middle and anterior points, then the lower's), in place
    /// of the ones the analysis found; the heights and the grade follow from them.
    public var vfaPoints: [String: [[Double]]]?
    /// Lateral spine: vertebrae's grade and type set by the reader, by name, over the ones the
    /// heights give (which the result keeps as `measured_grade`).
    public var vfaGrades: [String: VFAGrade]?

    public enum CodingKeys: String, CodingKey {
        case discLinesMM = "disc_lines_mm", l4YMM = "l4_y_mm", neckBoxShiftMM = "neck_box_shift_mm"
        case vfaPoints = "vfa_points", vfaGrades = "vfa_grades"
    }

    public init(discLinesMM: [Double]? = nil, l4YMM: Double? = nil, neckBoxShiftMM: Double? = nil, vfaPoints: [String: [[Double]]]? = nil,
                vfaGrades: [String: VFAGrade]? = nil) {
        self.discLinesMM = discLinesMM; self.l4YMM = l4YMM; self.neckBoxShiftMM = neckBoxShiftMM
        self.vfaPoints = vfaPoints; self.vfaGrades = vfaGrades
    }

    public var isEmpty: Bool {
        discLinesMM == nil && l4YMM == nil && (neckBoxShiftMM ?? 0) == 0 && (vfaPoints ?? [:]).isEmpty && (vfaGrades ?? [:]).isEmpty
    }

    /// A vertebra's grade as the reader sets it: 0–3 and, from grade 1, its type.
    public struct VFAGrade: Sendable, Codable, Equatable {
        public var grade: Int
        public var type: VertebralBody.Kind?
        public init(grade: Int, type: VertebralBody.Kind?) { self.grade = grade; self.type = type }

        public var problem: String? {
            guard (0...3).contains(grade) else { return "a Genant grade is 0 to 3, not \(grade)" }
            if grade > 0 && type == nil { return "a grade of 1 or more needs its type: wedge, biconcave or crush" }
            if grade == 0 && type != nil { return "grade 0 has no type" }
            return nil
        }
    }

    /// Why six points cannot be a vertebral body's, or nil: six [x, y] pairs of finite
    /// millimetres, each endplate running posterior to anterior with x (the image's
    /// orientation; docs/analysis.md), each lower point below its upper one, heights of 3–60
    /// mm and a depth of 10–80 mm.
    public static func pointsProblem(_ points: [[Double]]) -> String? {
        guard points.count == 6 else { return "six points are needed (the upper endplate's posterior, middle, anterior, then the lower's), not \(points.count)" }
        guard points.allSatisfy({ $0.count == 2 }) else { return "each point is [x, y] in mm" }
        guard points.allSatisfy({ $0.allSatisfy(\.isFinite) }) else { return "a point is not a number" }
        for k in [0, 3] where !(points[k][0] < points[k + 1][0] && points[k + 1][0] < points[k + 2][0]) {
            return "each endplate's points run from posterior to anterior (x increasing)"
        }
        for k in 0..<3 {
            let dx = points[k + 3][0] - points[k][0], dy = points[k + 3][1] - points[k][1]
            let h = (dx * dx + dy * dy).squareRoot()
            guard dy > 0 else { return "each lower endplate point lies below its upper one (larger y)" }
            guard (3...60).contains(h) else { return String(format: "a height of %.1f mm is not a vertebral body's (3–60 mm)", h) }
        }
        for k in [0, 3] {
            let d = points[k + 2][0] - points[k][0]
            guard (10...80).contains(d) else { return String(format: "a depth of %.1f mm is not a vertebral body's (10–80 mm)", d) }
        }
        return nil
    }

    /// A disc line kept from the analysis when a corrected one lies this close to it.
    public static let nearestDiscMM = 12.0
    /// How far the neck box may be moved: half its own length either way and more would leave
    /// the neck (the waist is where ISCD places it).
    public static let neckBoxShiftLimitMM = 15.0
    /// Disc lines closer than this are not two disc spaces (the smallest lumbar body is ~20 mm).
    public static let minimumLevelMM = 8.0

    /// Why the correction cannot be applied to a scan of `site`, or nil.
    public func problem(site: String) -> String? {
        let spine = discLinesMM != nil || l4YMM != nil
        let hip = neckBoxShiftMM != nil
        let lateral = vfaPoints != nil || vfaGrades != nil
        if site == "ap_spine" && hip { return "a neck box is moved on a hip scan, not on the AP spine" }
        if site.hasSuffix("_hip") && spine { return "disc lines and labels are corrected on the AP spine, not on a hip" }
        if site != "lateral_spine" && lateral { return "vertebral points and grades are corrected on the lateral spine, not on \(site)" }
        if site == "lateral_spine" && (spine || hip) { return "the lateral spine takes vertebral points and grades, not disc lines, labels or a neck box" }
        if site != "ap_spine" && !site.hasSuffix("_hip") && site != "lateral_spine" { return "\(site) has no ROIs to correct" }
        let levels = Set(VertebralMorphometry.levels)
        for (name, points) in (vfaPoints ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard levels.contains(name) else { return "\(name) is not one of T4–L4" }
            if let why = Self.pointsProblem(points) { return "\(name): \(why)" }
        }
        for (name, g) in (vfaGrades ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard levels.contains(name) else { return "\(name) is not one of T4–L4" }
            if let why = g.problem { return "\(name): \(why)" }
        }
        if let ys = discLinesMM {
            guard ys.count >= 3 else { return "at least three disc lines (two vertebrae) are needed, not \(ys.count)" }
            guard ys.allSatisfy(\.isFinite) else { return "a disc line is not a number" }
            for (a, b) in zip(ys, ys.dropFirst()) where b - a < Self.minimumLevelMM {
                return "disc lines must run top to bottom at least \(Int(Self.minimumLevelMM)) mm apart (\(a) then \(b) mm)"
            }
        }
        if let y = l4YMM, !y.isFinite { return "the L4 position is not a number" }
        if let s = neckBoxShiftMM, !(s.isFinite && abs(s) <= Self.neckBoxShiftLimitMM) {
            return "the neck box moves at most \(Int(Self.neckBoxShiftLimitMM)) mm along the neck, not \(s)"
        }
        return nil
    }
}
