import DXProtocol
import Foundation

/// What a capture holds, for a service engineer: the device, when, and per scan its role,
/// configuration and how many of its lines are there.
public struct CaptureSummary: Sendable, Codable, Equatable {
    public struct Scan: Sendable, Codable, Equatable {
        public var scanID: UInt32
        public var role: String
        public var region: String?
        public var mode: String?
        public var plannedLines: UInt32?
        public var lines: Int
        /// Line indices below the highest received that never arrived.
        public var missingLines: Int
        public var linePeriodUs: UInt32?
        public var tubeCurrentUA: UInt32?
        public var lineStepUm: Int32?
        public var yStartUm: Int32?

        public enum CodingKeys: String, CodingKey {
            case role, region, mode, lines
            case scanID = "scan_id", plannedLines = "planned_lines", missingLines = "missing_lines", linePeriodUs = "line_period_us"
            case tubeCurrentUA = "tube_current_ua", lineStepUm = "line_step_um", yStartUm = "y_start_um"
        }
    }

    public var path: String
    public var bytes: Int
    public var created: String
    public var serial: String
    public var firmware: String
    public var phantom: String?
    public var records: Int
    /// The file ends inside a record (the writer was killed); everything before it is readable.
    public var truncatedTail: Bool
    public var scans: [Scan]

    public enum CodingKeys: String, CodingKey {
        case path, bytes, created, serial, firmware, phantom, records, scans
        case truncatedTail = "truncated_tail"
    }

    public static func read(path: String) throws(AnalysisError) -> CaptureSummary {
        guard let data = FileManager.default.contents(atPath: path) else { throw .unreadable(path, "cannot read the file") }
        return try summary(of: Array(data), path: path)
    }

    /// The summary of a capture's bytes; `path` names it in the summary and in errors.
    public static func summary(of data: [UInt8], path: String) throws(AnalysisError) -> CaptureSummary {
        let contents: CaptureFormat.Contents
        do { contents = try CaptureFormat.parse(data) } catch { throw .unreadable(path, error.description) }
        let scans = CaptureReader.scans(in: contents).map { s in
            let indices = Set(s.lines.map(\.index))
            let highest = s.lines.map(\.index).max().map { Int($0) + 1 } ?? 0
            return Scan(scanID: s.scan.scanID, role: s.scan.role.rawValue, region: s.scan.region?.rawValue,
                        mode: s.configuration.map { "\($0.mode)" }, plannedLines: s.configuration?.lineCount, lines: s.lines.count,
                        missingLines: highest - indices.count, linePeriodUs: s.configuration?.linePeriodUs,
                        tubeCurrentUA: s.configuration?.tubeCurrentUA, lineStepUm: s.configuration?.lineStepUm,
                        yStartUm: s.configuration?.yStartUm)
        }
        let d = contents.header.device
        return CaptureSummary(path: path, bytes: data.count, created: contents.header.created, serial: d.serial,
                              firmware: "\(d.fwMajor).\(d.fwMinor).\(d.fwPatch)", phantom: contents.header.phantom?.name,
                              records: contents.records.count, truncatedTail: contents.truncatedTail, scans: scans)
    }
}
