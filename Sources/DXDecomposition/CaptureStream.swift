import DXProtocol
import Foundation

/// A capture file read as it goes (issue 18): its records decoded a chunk at a time, never the
/// whole file in memory, so that `dexa analyze` holds what the analysis needs and not the raw
/// samples of a capture of any length. The same record reader (`CaptureRecordReader`) and frame
/// decoders as a capture read whole (`CaptureReader.scans`).
public struct CaptureFile: Sendable {
    public let path: String
    public let header: CaptureHeader
    /// Where the records start (after the preamble).
    let recordsOffset: Int
    /// Bytes read from the file at a time.
    public var chunkBytes = 1 << 20

    public init(path: String) throws(AnalysisError) {
        guard let file = FileHandle(forReadingAtPath: path) else { throw .unreadable(path, "cannot read the file") }
        defer { try? file.close() }
        do {
            let first = Array((try file.read(upToCount: CaptureFormat.fixedPreambleBytes)) ?? Data())
            let length = try CaptureFormat.headerLength(first)
            let json = Array((try file.read(upToCount: length)) ?? Data())
            header = try CaptureFormat.header(first + json)
            recordsOffset = CaptureFormat.fixedPreambleBytes + length
        } catch let error as CaptureError {
            throw .unreadable(path, error.description)
        } catch {
            throw .unreadable(path, "cannot read the file: \(error)")
        }
        self.path = path
    }

    /// Every record in file order; returns whether the file ends inside a record (a writer
    /// killed mid-record: everything before it is read, as `CaptureFormat.parse` does).
    @discardableResult
    public func forEachRecord(_ body: (CaptureRecord) throws(AnalysisError) -> Void) throws(AnalysisError) -> Bool {
        guard let file = FileHandle(forReadingAtPath: path) else { throw .unreadable(path, "cannot read the file") }
        defer { try? file.close() }
        var reader = CaptureRecordReader(offset: recordsOffset)
        do {
            try file.seek(toOffset: UInt64(recordsOffset))
        } catch {
            throw .unreadable(path, "cannot read the file: \(error)")
        }
        while true {
            let chunk: Data
            do { chunk = try file.read(upToCount: max(1, chunkBytes)) ?? Data() } catch { throw .unreadable(path, "cannot read the file: \(error)") }
            if chunk.isEmpty { break }
            reader.append(chunk)
            do {
                while let record = try reader.next() { try body(record) }
            } catch let error as CaptureError {
                throw .unreadable(path, error.description)
            } catch let error as AnalysisError {
                throw error
            } catch {
                throw .unreadable(path, "\(error)")
            }
        }
        return reader.pending > 0
    }

    /// The scans' configurations (from the CONFIGURE_SCAN commands the host sent) and each data
    /// line with its scan id, in the order they were recorded.
    public func forEachLine(configuration: (ScanConfiguration) -> Void,
                            line: (UInt32, ScanLine) throws(AnalysisError) -> Void) throws(AnalysisError) {
        var commands = FrameDecoder(), data = FrameDecoder()
        try forEachRecord { record throws(AnalysisError) in
            switch record.endpoint {
            case .commandOut:
                commands.append(record.bytes)
                while let f = commands.next() {
                    if f.kind == .command, case .configureScan(let c)? = try? Command(payload: f.payload) { configuration(c) }
                }
            case .dataIn:
                data.append(record.bytes)
                while let f = data.next() {
                    guard f.kind == .data, let d = try? DataFrame(payload: f.payload) else { continue }
                    for l in d.lines { try line(d.scanID, l) }
                }
            case .responseIn:
                break
            }
        }
    }
}

/// Where a measured capture's scans come from: a file read as it goes (`dexa analyze`,
/// `dexa reanalyze`), or scans already in memory (the fuzzer's bytes, tests). The analysis
/// reads it twice: every scan's configuration and the references' lines, then the measured
/// scan's lines one at a time.
public enum CaptureSource: Sendable {
    case file(CaptureFile)
    case scans(CaptureHeader, [CapturedScan])

    public var header: CaptureHeader {
        switch self {
        case .file(let f): f.header
        case .scans(let h, _): h
        }
    }

    /// Every scan of the header with its configuration and how many lines it has; the lines
    /// themselves only for the scans `keep` names.
    public func survey(keep: Set<UInt32>) throws(AnalysisError) -> (scans: [CapturedScan], lineCounts: [UInt32: Int]) {
        switch self {
        case .scans(_, let scans):
            return (scans, Dictionary(scans.map { ($0.scan.scanID, $0.lines.count) }, uniquingKeysWith: +))
        case .file(let f):
            var configs: [UInt32: ScanConfiguration] = [:]
            var lines: [UInt32: [ScanLine]] = [:]
            var counts: [UInt32: Int] = [:]
            try f.forEachLine(configuration: { configs[$0.scanID] = $0 }, line: { id, line in
                counts[id, default: 0] += 1
                if keep.contains(id) { lines[id, default: []].append(line) }
            })
            return (f.header.scans.map { CapturedScan(scan: $0, configuration: configs[$0.scanID], lines: lines[$0.scanID] ?? []) }, counts)
        }
    }

    /// The lines of scan `id`, in the order they were recorded.
    func forEachLine(ofScan id: UInt32, _ body: (ScanLine) throws(AnalysisError) -> Void) throws(AnalysisError) {
        switch self {
        case .scans(_, let scans):
            // The first scan of that id, as `survey` and the header list them.
            for line in scans.first(where: { $0.scan.scanID == id })?.lines ?? [] { try body(line) }
        case .file(let f):
            try f.forEachLine(configuration: { _ in }, line: { scan, line throws(AnalysisError) in
                if scan == id { try body(line) }
            })
        }
    }
}
