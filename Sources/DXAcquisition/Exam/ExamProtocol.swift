import DXProtocol
import Foundation

/// The scan geometry of each site: where the carriage starts, how many lines of what period
/// and current, the arm's angle and the energy mode. The standard protocol is built in; a
/// site can be changed in a JSON file (`exam_protocol` in dexad.conf; docs/exam.md), any field
/// left out keeping its standard value.
public struct ExamProtocol: Sendable, Codable, Equatable {
    public struct SiteScan: Sendable, Codable, Equatable {
        public var xUm: Int32
        public var yStartUm: Int32
        public var lines: UInt32
        public var lineStepUm: Int32
        public var linePeriodUs: UInt32
        public var tubeCurrentUA: UInt32
        /// Tenths of a degree: 0 for the front view, 900 for the side (VFA).
        public var armAngleX10: Int16
        /// `dual`, or `single` (VFA may use the high window alone; its quick look then shows
        /// the image, not bone mineral).
        public var mode: String
        public var linesPerFrame: UInt16

        public enum CodingKeys: String, CodingKey {
            case lines, mode
            case xUm = "x_um", yStartUm = "y_start_um", lineStepUm = "line_step_um", linePeriodUs = "line_period_us"
            case tubeCurrentUA = "tube_current_ua", armAngleX10 = "arm_angle_x10", linesPerFrame = "lines_per_frame"
        }

        public var scanMode: ScanMode { mode == "single" ? .single : .dual }
        /// Lines × period.
        public var expectedDuration: Duration { .microseconds(Int64(lines) * Int64(linePeriodUs)) }

        public func plan(region: Site, phantom: Phantom? = nil) -> ScanPlan {
            ScanPlan(mode: scanMode, xUm: xUm, yStartUm: yStartUm, lineCount: lines, lineStepUm: lineStepUm, linePeriodUs: linePeriodUs,
                     tubeCurrentUA: tubeCurrentUA, linesPerFrame: linesPerFrame, role: .patient, region: region, phantom: phantom)
        }
    }

    public var sites: [String: SiteScan]
    /// The exam's time budget, minutes: the clinic's leaflets promise 15 to 25.
    public var budgetMinutes: [Double]
    /// A movement of at least this much stops the scan (mm); a smaller one flags it.
    public var motionLimitMM: Double
    /// The heaviest patient the table takes (kg).
    public var tableLimitKg: Double

    public enum CodingKeys: String, CodingKey {
        case sites
        case budgetMinutes = "budget_minutes", motionLimitMM = "motion_limit_mm", tableLimitKg = "table_limit_kg"
    }

    public func scan(_ site: Site) -> SiteScan? { sites[site.rawValue] }

    /// The standard exam on a patient lying on the table's midline (x = 200 mm): AP spine over
    /// L1–L5 (220 lines of 1 mm at 1 s and 0.4 mA: 3 min 40 s), each hip (150 lines of 1 mm
    /// at 1.2 s and 0.33 mA: 3 min), the lateral spine T4–L4 with the arm at 90° (380 lines of
    /// 1 mm at 0.5 s and 0.8 mA: 3 min 10 s). Exposure 400 ms·mA per line throughout.
    public static let standard = ExamProtocol(
        sites: [
            Site.apSpine.rawValue: SiteScan(xUm: 200_000, yStartUm: 580_000, lines: 220, lineStepUm: 1000, linePeriodUs: 1_000_000,
                                            tubeCurrentUA: 400, armAngleX10: 0, mode: "dual", linesPerFrame: 1),
            Site.leftHip.rawValue: SiteScan(xUm: 300_000, yStartUm: 860_000, lines: 150, lineStepUm: 1000, linePeriodUs: 1_200_000,
                                            tubeCurrentUA: 333, armAngleX10: 0, mode: "dual", linesPerFrame: 1),
            Site.rightHip.rawValue: SiteScan(xUm: 100_000, yStartUm: 860_000, lines: 150, lineStepUm: 1000, linePeriodUs: 1_200_000,
                                             tubeCurrentUA: 333, armAngleX10: 0, mode: "dual", linesPerFrame: 1),
            Site.lateralSpine.rawValue: SiteScan(xUm: 185_000, yStartUm: 320_000, lines: 380, lineStepUm: 1000, linePeriodUs: 500_000,
                                                 tubeCurrentUA: 800, armAngleX10: 900, mode: "dual", linesPerFrame: 1),
        ],
        budgetMinutes: [15, 25], motionLimitMM: 2, tableLimitKg: 204)

    /// The standard protocol with a JSON file's fields laid over it.
    public static func load(path: String) throws -> ExamProtocol {
        guard let data = FileManager.default.contents(atPath: path) else { throw ProtocolFileError(message: "cannot read the exam protocol \(path)") }
        return try parse(data, path: path)
    }

    /// A protocol file's bytes laid over the standard protocol; `path` names it in messages.
    public static func parse(_ data: Data, path: String) throws(ProtocolFileError) -> ExamProtocol {
        do {
            let p = try JSONOverlay.decode(ExamProtocol.self, defaults: standard, overlay: try JSONSerialization.jsonObject(with: data))
            if let why = p.problem { throw ProtocolFileError(message: "\(path): \(why)") }
            return p
        } catch let e as ProtocolFileError {
            throw e
        } catch {
            throw ProtocolFileError(message: "\(path) is not an exam protocol: \(error)")
        }
    }

    public var problem: String? {
        for site in Site.allCases where sites[site.rawValue] == nil { return "no scan for \(site.rawValue)" }
        for (name, s) in sites {
            if s.lines == 0 || s.linePeriodUs == 0 { return "\(name): lines and line_period_us must be positive" }
            if s.mode != "dual" && s.mode != "single" { return "\(name): mode must be dual or single" }
        }
        if budgetMinutes.count != 2 || budgetMinutes[0] > budgetMinutes[1] { return "budget_minutes must be [shortest, longest]" }
        if !(0.5...20).contains(motionLimitMM) { return "motion_limit_mm must be 0.5 to 20" }
        return nil
    }
}

public struct ProtocolFileError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
