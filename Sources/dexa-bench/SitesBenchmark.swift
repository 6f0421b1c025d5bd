import DXAcquisition
import DXAnalysis
import DXClinical
import DXDecomposition
import DXProtocol
import DXSimulator
import Foundation

/// `dexa-bench sites`: the analysis layer's cost (issue 18): a whole exam's four sites (AP
/// spine, both hips, the lateral spine) analysed as the daemon analyses them after each site
/// (ROIs, labels, T- and Z-scores, WHO class, the hip's landmarks, VFA morphometry and
/// grading), in CPU seconds of this process. The decomposed scans are made first (not timed):
/// `exams` patients (`PatientVariety` seeds 1…N) scanned with the standard protocol in the
/// exposure mode a scout chooses, on the simulator's detector, written as captures and
/// decomposed from them (`BatchBenchmark.writeArchive`, `CaptureAnalysis`).
enum SitesBenchmark {
    /// This process's CPU time (user and system), seconds.
    static func cpuSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    static func run(exams: Int) throws {
        let dir = NSTemporaryDirectory() + "dexa-bench-sites-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let order: [Site] = [.apSpine, .leftHip, .rightHip, .lateralSpine]
        let archive = try BatchBenchmark.writeArchive(dir: dir, patients: exams, sites: order)
        let calibration = try CaptureAnalysis.fit(try CaptureReader.read(path: archive.calibration), path: archive.calibration)
        var scans: [[(Site, DecomposedScan)]] = []
        for k in 0..<exams {
            var exam: [(Site, DecomposedScan)] = []
            for (n, site) in order.enumerated() {
                let path = archive.captures[k * order.count + n]
                let result = try CaptureAnalysis.run(calibration: calibration, calibrationPath: archive.calibration,
                                                     source: .file(try CaptureFile(path: path)), scanPath: path)
                guard let scan = result.decomposed else { throw BenchError(message: "\(path): no decomposed scan") }
                exam.append((site, scan))
            }
            scans.append(exam)
        }
        // Every decomposed pixel's bits, so that a faster decomposition can show it gives these
        // patients the same images.
        var digest = Digest()
        for exam in scans {
            for (_, scan) in exam {
                for plane in [scan.bone, scan.softTissue, scan.fatFraction] { for x in plane { digest.add(UInt64(x.bitPattern)) } }
                for m in scan.marks { digest.add(UInt64(m.rawValue)) }
            }
        }
        print("decomposed images' digest \(digest.hex) (\(exams) patients, 4 sites each)")
        let patient = PatientContext(sex: .female, ageYears: 67)
        var perExam: [Double] = [], perSite: [Site: [Double]] = [:]
        var analysed = 0, failed = 0
        for exam in scans {
            var total = 0.0
            for (site, scan) in exam {
                let start = cpuSeconds()
                let result = SiteAnalysis.analyze(scan, patient: patient)
                let spent = cpuSeconds() - start
                if case .success = result { analysed += 1 } else { failed += 1 }
                perSite[site, default: []].append(spent)
                total += spent
            }
            perExam.append(total)
        }
        func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.isEmpty ? .nan : s[s.count / 2] }
        print("the analysis of a whole exam (AP spine, both hips, lateral spine), \(exams) patients: \(analysed) sites analysed, \(failed) without an automatic analysis")
        print(String(format: "CPU per exam: median %.3f s, worst %.3f s", median(perExam), perExam.max() ?? .nan))
        for site in order {
            print(String(format: "  %@: median %.3f s, worst %.3f s", site.rawValue, median(perSite[site] ?? []), perSite[site]?.max() ?? .nan))
        }
        print("{\"sites_cpu_s_median\": \(String(format: "%.3f", median(perExam))), \"sites_cpu_s_worst\": \(String(format: "%.3f", perExam.max() ?? .nan)), \"exams\": \(exams)}")
    }
}
