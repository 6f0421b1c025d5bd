import Foundation

/// A positioning, labelling or artefact finding, with the measure that raised it: the
/// technologist sees what to correct, the physician what to doubt.
public struct AnalysisWarning: Sendable, Codable, Equatable, CustomStringConvertible {
    /// A stable code (`spine_tilted`, `labels_disagree`, …: docs/analysis.md).
    public var code: String
    public var message: String
    public var value: Double?
    public var unit: String?

    public init(code: String, message: String, value: Double? = nil, unit: String? = nil) {
        self.code = code; self.message = message; self.value = value; self.unit = unit
    }

    public var description: String { message }
}

/// A line across the spine through the middle of a disc space: where it crosses the spine's
/// axis, and its slope (dy/dx; 0 is square to the table).
public struct DiscLine: Sendable, Codable, Equatable {
    public var xMM: Double
    public var yMM: Double
    public var slope: Double

    public enum CodingKeys: String, CodingKey {
        case slope
        case xMM = "x_mm", yMM = "y_mm"
    }

    public init(xMM: Double, yMM: Double, slope: Double) { self.xMM = xMM; self.yMM = yMM; self.slope = slope }

    public func y(atX x: Double) -> Double { yMM + slope * (x - xMM) }
}

/// One vertebral level of an AP spine, measured: the ROI between two disc lines across the
/// body, and what lies in it.
public struct VertebraMeasure: Sendable, Codable, Equatable {
    public var name: String
    /// BMC over the ROI's bone pixels and their area; nil BMD when no pixel is bone.
    public var bmdGCm2: Double?
    public var bmcG: Double
    public var areaCm2: Double
    /// The body's height along the axis (its bone between the discs).
    public var heightMM: Double
    public var upper: DiscLine
    public var lower: DiscLine
    /// The ROI's sides on the table, at the level's centre.
    public var leftXMM: Double
    public var rightXMM: Double
    public var centreXMM: Double
    public var centreYMM: Double
    /// Structurally abnormal (metal, a fracture, an osteophyte): why, with its measure.
    public var abnormality: String?
    /// Lines inside the ROI that never arrived.
    public var missingLines: Int
    public var complete: Bool { missingLines == 0 }

    public enum CodingKeys: String, CodingKey {
        case name, upper, lower, abnormality
        case bmdGCm2 = "bmd_g_cm2", bmcG = "bmc_g", areaCm2 = "area_cm2", heightMM = "height_mm"
        case leftXMM = "left_x_mm", rightXMM = "right_x_mm", centreXMM = "centre_x_mm", centreYMM = "centre_y_mm"
        case missingLines = "missing_lines"
    }
}

/// Which landmark named the vertebrae.
public struct Labelling: Sendable, Codable, Equatable {
    /// `technologist`: the names were set by a correction (`ROICorrection.l4YMM`).
    public enum Cue: String, Sendable, Codable { case iliacCrests = "iliac_crests", ribs, technologist }
    public var decidedBy: Cue
    /// The highest point of the iliac crests in the field, when seen.
    public var crestYMM: Double?
    /// The level the lowest ribs attach to (T12 by the rib cue), when seen.
    public var lowestRibsOn: String?
    /// Both cues seen and naming the same vertebrae.
    public var cuesAgree: Bool?

    public enum CodingKeys: String, CodingKey {
        case decidedBy = "decided_by", crestYMM = "crest_y_mm", lowestRibsOn = "lowest_ribs_on", cuesAgree = "cues_agree"
    }

    /// How the names were decided, in words for the results and the report.
    public var words: String {
        let cue = switch decidedBy {
        case .iliacCrests: "the iliac crests (L4–L5)"
        case .ribs: "the lowest ribs (T12)"
        case .technologist: "the technologist's correction"
        }
        return "vertebrae named from \(cue)" + (cuesAgree == true ? "; the ribs agree" : "")
    }
}

/// The AP spine's measurement: every complete level found, named, with its ROI; how the names
/// were decided; the findings. No reference data is involved yet (`SpineResult` adds it).
public struct SpineMeasurement: Sendable, Codable, Equatable {
    public var vertebrae: [VertebraMeasure]
    public var labelling: Labelling
    public var warnings: [AnalysisWarning]
    /// The spine's axis, a point every 5 mm (for drawing and for the record).
    public var axis: [[Double]]
    /// One pixel's bone-mineral noise in soft tissue, and the bone threshold it gave.
    public var noiseGCm2: Double
    public var thresholdGCm2: Double

    public enum CodingKeys: String, CodingKey {
        case vertebrae, labelling, warnings, axis
        case noiseGCm2 = "noise_g_cm2", thresholdGCm2 = "threshold_g_cm2"
    }

    public func vertebra(_ name: String) -> VertebraMeasure? { vertebrae.first { $0.name == name } }
}

/// Why a scan gets no spine analysis: one sentence for the user.
public enum SpineAnalysisError: Error, Sendable, Equatable, CustomStringConvertible {
    case notAnAPSpine(String)
    case noSpine(String)
    case tooFewLevels(Int)
    case cannotLabel
    /// Pitch or line step outside 1 µm–100 mm: not an image an analysis can measure.
    case impossibleGeometry(String)
    /// A level much taller than the others: a disc space not found (two vertebrae taken for
    /// one), which would shift every name.
    case discNotFound(Double)
    /// Lines missing between the spine's disc spaces: a disc may lie in them.
    case linesMissingInSpine(Double)
    /// A technologist's correction that cannot be applied to this scan.
    case correction(String)

    public var description: String {
        switch self {
        case .notAnAPSpine(let region): "this is a \(region) scan, not an AP spine: no spine analysis"
        case .noSpine(let why): "no spine in the field: \(why)"
        case .tooFewLevels(let n): "only \(n) complete vertebral level\(n == 1 ? "" : "s") found between disc spaces: no spine analysis (was the scan stopped early, or the spine outside the field?)"
        case .cannotLabel: "the vertebrae cannot be named: neither the iliac crests nor the lowest ribs are in the field (rescan from the iliac crests to T12)"
        case .impossibleGeometry(let why): "the scan's geometry cannot be measured (\(why))"
        case .discNotFound(let y): "a disc space was not found near y \(String(format: "%.0f", y)) mm (a level far taller than the others): the vertebrae cannot be delineated and named reliably"
        case .linesMissingInSpine(let mm): "\(String(format: "%.0f", mm)) mm of lines are missing between the spine's disc spaces: the vertebrae cannot be delineated and named reliably"
        case .correction(let why): "the correction cannot be applied: \(why)"
        }
    }
}
