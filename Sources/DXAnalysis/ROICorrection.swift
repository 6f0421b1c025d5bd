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

    public enum CodingKeys: String, CodingKey {
        case discLinesMM = "disc_lines_mm", l4YMM = "l4_y_mm", neckBoxShiftMM = "neck_box_shift_mm"
    }

    public init(discLinesMM: [Double]? = nil, l4YMM: Double? = nil, neckBoxShiftMM: Double? = nil) {
        self.discLinesMM = discLinesMM; self.l4YMM = l4YMM; self.neckBoxShiftMM = neckBoxShiftMM
    }

    public var isEmpty: Bool { discLinesMM == nil && l4YMM == nil && (neckBoxShiftMM ?? 0) == 0 }

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
        if site == "ap_spine" && hip { return "a neck box is moved on a hip scan, not on the AP spine" }
        if site.hasSuffix("_hip") && spine { return "disc lines and labels are corrected on the AP spine, not on a hip" }
        if site != "ap_spine" && !site.hasSuffix("_hip") { return "\(site) has no ROIs to correct" }
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
