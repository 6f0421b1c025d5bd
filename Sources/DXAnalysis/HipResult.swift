import Foundation

/// One hip ROI measured: its bone's mineral, area and density, and whether lines are missing in it.
public struct HipROIMeasure: Sendable, Codable, Equatable {
    /// `neck`, `trochanter`, `intertrochanter`, `total_hip`, `wards`.
    public var name: String
    public var bmdGCm2: Double?
    public var bmcG: Double
    public var areaCm2: Double
    public var missingLines: Int
    public var complete: Bool { missingLines == 0 }

    public enum CodingKeys: String, CodingKey {
        case name
        case bmdGCm2 = "bmd_g_cm2", bmcG = "bmc_g", areaCm2 = "area_cm2", missingLines = "missing_lines"
    }
}

/// A point on the table, mm.
public struct TablePoint: Sendable, Codable, Equatable {
    public var xMM: Double
    public var yMM: Double
    public init(_ x: Double, _ y: Double) { xMM = x; yMM = y }
    public enum CodingKeys: String, CodingKey { case xMM = "x_mm", yMM = "y_mm" }
}

/// The hip's measurement: the landmarks found, the ROIs' outlines and their numbers, the
/// findings. No reference data yet (`HipAnalysis.interpret` adds it).
public struct HipMeasurement: Sendable, Codable, Equatable {
    /// `left` or `right`.
    public var side: String
    public var headCentre: TablePoint
    public var headRadiusMM: Double
    /// The neck's axis: its narrowest point and its direction (unit, from the head towards the shaft).
    public var neckWaist: TablePoint
    public var neckDirection: TablePoint
    public var neckWidthMM: Double
    /// The shaft's axis: a point at the top and one at the bottom of what was fitted.
    public var shaftTop: TablePoint
    public var shaftBottom: TablePoint
    /// Between the neck's axis (towards the head) and the shaft's (towards the knee), as projected.
    public var neckShaftAngleDeg: Double
    /// The shaft's angle to the scan's direction (positive: the knee lateral of the hip).
    public var shaftAngleDeg: Double
    /// Where the femur's medial edge leaves the shaft going up (the lesser trochanter's lowest
    /// point), and how far the lesser trochanter stands out beyond the shaft.
    public var lesserTrochanterBottomYMM: Double?
    public var lesserTrochanterMM: Double?
    /// Outlines for drawing and the record: the neck box, the total hip's cuts (medial across
    /// the neck, and the bottom), the line between trochanter and intertrochanter, Ward's square.
    public var neckBox: [TablePoint]
    public var medialCut: [TablePoint]
    public var bottomCut: [TablePoint]?
    public var trochanterLine: [TablePoint]?
    public var wardsBox: [TablePoint]?
    public var rois: [HipROIMeasure]
    public var warnings: [AnalysisWarning]
    public var noiseGCm2: Double
    public var thresholdGCm2: Double
    /// Each ROI's pixels (row × columns + column of the `BoneMap`, rows head to foot): for
    /// drawing and for tests against a scene's truth; not stored.
    public var pixels: [String: [Int]] = [:]

    public enum CodingKeys: String, CodingKey {
        case side, rois, warnings
        case headCentre = "head_centre", headRadiusMM = "head_radius_mm", neckWaist = "neck_waist", neckDirection = "neck_direction"
        case neckWidthMM = "neck_width_mm", shaftTop = "shaft_top", shaftBottom = "shaft_bottom", neckShaftAngleDeg = "neck_shaft_angle_deg"
        case shaftAngleDeg = "shaft_angle_deg", lesserTrochanterBottomYMM = "lesser_trochanter_bottom_y_mm"
        case lesserTrochanterMM = "lesser_trochanter_mm", neckBox = "neck_box", medialCut = "medial_cut", bottomCut = "bottom_cut"
        case trochanterLine = "trochanter_line", wardsBox = "wards_box", noiseGCm2 = "noise_g_cm2", thresholdGCm2 = "threshold_g_cm2"
    }

    public func roi(_ name: String) -> HipROIMeasure? { rois.first { $0.name == name } }

    public static func == (a: HipMeasurement, b: HipMeasurement) -> Bool {
        // The pixels follow from the rest; they are not part of the record.
        var a = a, b = b
        a.pixels = [:]; b.pixels = [:]
        return a.side == b.side && a.headCentre == b.headCentre && a.headRadiusMM == b.headRadiusMM && a.neckWaist == b.neckWaist
            && a.neckDirection == b.neckDirection && a.neckWidthMM == b.neckWidthMM && a.shaftTop == b.shaftTop && a.shaftBottom == b.shaftBottom
            && a.neckShaftAngleDeg == b.neckShaftAngleDeg && a.shaftAngleDeg == b.shaftAngleDeg
            && a.lesserTrochanterBottomYMM == b.lesserTrochanterBottomYMM && a.lesserTrochanterMM == b.lesserTrochanterMM
            && a.neckBox == b.neckBox && a.medialCut == b.medialCut && a.bottomCut == b.bottomCut && a.trochanterLine == b.trochanterLine
            && a.wardsBox == b.wardsBox && a.rois == b.rois && a.warnings == b.warnings && a.noiseGCm2 == b.noiseGCm2
            && a.thresholdGCm2 == b.thresholdGCm2
    }
}

/// Why a scan gets no hip analysis: one sentence for the user.
public enum HipAnalysisError: Error, Sendable, Equatable, CustomStringConvertible {
    case notAHip(String)
    case impossibleGeometry(String)
    case noFemur(String)
    case otherSide(expected: String)
    case headNotFound
    case metal(Double)
    case implausibleNeck(String)
    /// A technologist's correction that cannot be applied to this scan.
    case correction(String)

    public var description: String {
        switch self {
        case .notAHip(let region): "this is a \(region) scan, not a hip: no hip analysis"
        case .impossibleGeometry(let why): "the scan's geometry cannot be measured (\(why))"
        case .noFemur(let why): "no femur in the field: \(why)"
        case .otherSide(let expected): "the femur in this scan is a \(expected == "left" ? "right" : "left") hip, and the scan is labelled \(expected): no analysis (scan the \(expected) hip, or correct the site)"
        case .headNotFound: "the femoral head was not found (is it in the field?): no hip analysis"
        case .metal(let area): "metal over the femur (\(Int(area.rounded())) mm²: a hip replacement or a fixation): the hip cannot be measured"
        case .implausibleNeck(let why): "the femoral neck could not be delineated (\(why)): no hip analysis"
        case .correction(let why): "the correction cannot be applied: \(why)"
        }
    }
}
