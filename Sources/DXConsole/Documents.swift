import DXAcquisition
import DXControl
import DXDecomposition
import DXReport
import Foundation

/// The report and the sites' images, made here as `dexa exam report` makes them: from
/// `exam.results` and the sites' decomposed scans beside their captures in dexad's state
/// directory, which the console's user reads as a member of the dexa group (a user who cannot
/// read them gets the report without its images, as the CLI does).
enum Documents {
    struct Failure: Error {
        var status: Int
        var message: String
    }

    static func make(_ route: ConsoleGate.Route, query: [String: String], link: DaemonLink) async -> Result<(String, [UInt8]), Failure> {
        // Every parameter known (a misspelt one is refused, not ignored): the image's attempt
        // and count of corrections name the result the page shows, and a result that has
        // since changed is refused rather than drawn under the page's older numbers (and they
        // make a changed image's address a new one, which no browser cache answers).
        let known: Set<String> = route == .siteImage ? ["token", "exam", "site", "attempt", "corrections"] : ["token", "exam"]
        if let unknown = query.keys.filter({ !known.contains($0) }).sorted().first {
            return .failure(Failure(status: 400, message: "unknown parameter \(unknown) (\(known.subtracting(["token"]).sorted().joined(separator: ", ")))"))
        }
        guard let text = query["exam"], let exam = Int64(text), exam > 0 else {
            return .failure(Failure(status: 400, message: "expected ?exam=N, the exam's number"))
        }
        let results: ExamResults
        do {
            results = try await link.call("exam.results", .object(["exam_id": .number(Double(exam))])).decode(ExamResults.self)
        } catch let e as RPCError {
            return .failure(Failure(status: 404, message: e.message))
        } catch {
            return .failure(Failure(status: 503, message: "dexad: \(error)"))
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dexa-console-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        } catch {
            return .failure(Failure(status: 500, message: "cannot make a scratch folder: \(error)"))
        }
        defer { try? FileManager.default.removeItem(at: directory) }
        switch route {
        case .report:
            let path = directory.appendingPathComponent("report.pdf").path
            do {
                try ReportWriter.pdf(results, scans: ReportWriter.scans(for: results), to: path)
                return .success(("application/pdf", Array(try Data(contentsOf: URL(fileURLWithPath: path)))))
            } catch {
                return .failure(Failure(status: 500, message: "the report could not be made: \(error)"))
            }
        case .siteImage:
            guard let name = query["site"], let site = results.sites.first(where: { $0.site == name }) else {
                return .failure(Failure(status: 400, message: "expected &site= one of \(results.sites.map(\.site).joined(separator: ", "))"))
            }
            guard let result = site.result else { return .failure(Failure(status: 404, message: "the \(site.title) has no analysis yet")) }
            if let asked = query["attempt"], asked != String(site.attempt ?? 0) {
                return .failure(Failure(status: 409, message: "the \(site.title)'s result is attempt \(site.attempt ?? 0)'s now, not \(asked)'s: show the results again"))
            }
            if let asked = query["corrections"], asked != String(site.corrections.count) {
                return .failure(Failure(status: 409, message: "the \(site.title)'s result has \(site.corrections.count) corrections now, not \(asked): show the results again"))
            }
            guard let capture = site.capture, let scan = try? DecomposedScan.read(path: DecomposedScan.path(forCapture: capture)) else {
                return .failure(Failure(status: 404, message: "the \(site.title)'s decomposed scan cannot be read here"))
            }
            let path = directory.appendingPathComponent("site.png").path
            do {
                try ReportRaster.sitePNG(result, scan: scan, to: path, scale: 3)
                return .success(("image/png", Array(try Data(contentsOf: URL(fileURLWithPath: path)))))
            } catch {
                return .failure(Failure(status: 500, message: "the image could not be made: \(error)"))
            }
        default:
            return .failure(Failure(status: 404, message: "no such document"))
        }
    }
}
