package com.tinybeauty.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Paint
import android.graphics.Path
import org.json.JSONObject
import kotlin.math.exp
import kotlin.math.max
import kotlin.math.min

/**
 * The crop's soft region masks, `makeup/gate.py` `soft_region_masks`: the crop's label map from its own
 * face-mesh landmarks with the card's `"regions"` polygons (`makeup/parsing.py` `landmarks_to_labels`), then one
 * mask per [REGIONS] entry (`makeup/metrics.py` `region_masks`: eyes = the eye zone, the eye opening grown by
 * `eye_reach` of the side; lips; skin outside the eye zone; brows), each blurred like
 * `cv2.GaussianBlur(m, (0, 0), sigma, borderType=BORDER_CONSTANT)` with `sigma = feather * size / 2`.
 *
 * One computation for two users, once per frame ([compute]): [LookGate] fades its limits with [masks], and a
 * region-input model ([MakeupModel.regionInput]) reads them as its input channels 3..6 ([inOrder]: the card's
 * `io.region_input.channels` order). The web demo's `src/gate.js` `softRegionMasks` does the same.
 *
 * The polygons are filled with android.graphics (no anti-aliasing), not cv2.fillPoly's rasteriser: the
 * label map can differ from Python's by a pixel along polygon edges, which the feather smooths over.
 * Not thread-safe: use it on the camera analysis thread. Buffers are allocated once per crop size.
 */
class RegionMasks private constructor(
    private val fill: List<Pair<Int, IntArray>>,   // (label value, landmark indices) in fill order
    private val labelOf: Map<String, Int>,
    private val eyeReach: Double,
    /** Soft edge, a fraction of the crop side (`feather` of `soft_region_masks`; 0: the hard masks). */
    val feather: Double,
    val size: Int,
) {
    private val n = size

    /** The label map of the last [compute] (the card's `"regions"` label values). */
    val labels = IntArray(n * n)

    /** One `size * size` mask in [0, 1] per [REGIONS] entry, as of the last [compute]. */
    val masks: Array<FloatArray> = Array(REGIONS.size) { FloatArray(n * n) }

    private val labelBitmap = Bitmap.createBitmap(n, n, Bitmap.Config.ARGB_8888)
    private val canvas = Canvas(labelBitmap)
    private val paint = Paint().apply { isAntiAlias = false; style = Paint.Style.FILL }
    private val path = Path()
    private val zone = FloatArray(n * n)
    private val tmp = FloatArray(n * n)

    // cv2.GaussianBlur(ksize (0, 0), sigma) on a float image: ksize = round(sigma * 8 + 1) | 1.
    private val sigma = max(feather * n / 2.0, 1e-3)
    private val kernel: FloatArray = run {
        val k = (Math.rint(sigma * 8.0 + 1.0).toInt()) or 1
        val taps = DoubleArray(k) { i -> val x = i - (k - 1) * 0.5; exp(-0.5 * x * x / (sigma * sigma)) }
        val total = taps.sum()
        FloatArray(k) { i -> (taps[i] / total).toFloat() }
    }

    /** The masks of the crop whose 478 face-mesh points (crop pixels, `[x0, y0, x1, y1, ...]`) are [landmarks]. */
    fun compute(landmarks: DoubleArray) {
        rasterise(landmarks)
        eyeZone(labelOf.getValue("eyes"), Math.rint(eyeReach * n).toInt(), zone)
        val skin = labelOf.getValue("skin")
        for ((r, name) in REGIONS.withIndex()) {
            val m = masks[r]
            when (name) {
                "eyes" -> zone.copyInto(m)
                "skin" -> for (i in m.indices) m[i] = if (labels[i] == skin && zone[i] == 0f) 1f else 0f
                else -> {
                    val v = labelOf.getValue(name)
                    for (i in m.indices) m[i] = if (labels[i] == v) 1f else 0f
                }
            }
            if (feather > 0) blur(m)
        }
    }

    /** [masks] in the order of [names] (region names of [REGIONS]): the same arrays, so [compute] updates them. */
    fun inOrder(names: List<String>): Array<FloatArray> = Array(names.size) { k ->
        val r = REGIONS.indexOf(names[k])
        require(r >= 0) { "unknown region ${names[k]} (known: ${REGIONS.joinToString()})" }
        masks[r]
    }

    /** `landmarks_to_labels`: the card's polygons in order, later ones over earlier ones. */
    private fun rasterise(landmarks: DoubleArray) {
        labelBitmap.eraseColor(0)
        for ((value, ids) in fill) {
            path.rewind()
            for ((k, id) in ids.withIndex()) {
                val x = landmarks[2 * id].toFloat() + 0.5f   // pixel centres at integers, as in Python
                val y = landmarks[2 * id + 1].toFloat() + 0.5f
                if (k == 0) path.moveTo(x, y) else path.lineTo(x, y)
            }
            path.close()
            paint.color = ALPHA_MASK or value
            canvas.drawPath(path, paint)
        }
        labelBitmap.getPixels(labels, 0, n, 0, 0, n, n)
        for (i in labels.indices) labels[i] = labels[i] and 0xFF
    }

    /** `eye_zone`: the eye opening grown by [reach] px (square max filter) as 0/1 into [out]. */
    private fun eyeZone(eyes: Int, reach: Int, out: FloatArray) {
        for (y in 0 until n) {
            for (x in 0 until n) {
                var hit = 0f
                for (j in max(x - reach, 0)..min(x + reach, n - 1)) if (labels[y * n + j] == eyes) { hit = 1f; break }
                tmp[y * n + x] = hit
            }
        }
        for (x in 0 until n) {
            for (y in 0 until n) {
                var hit = 0f
                for (j in max(y - reach, 0)..min(y + reach, n - 1)) if (tmp[j * n + x] != 0f) { hit = 1f; break }
                out[y * n + x] = hit
            }
        }
    }

    /** cv2.GaussianBlur(m, (0, 0), sigma, borderType=BORDER_CONSTANT), in place. */
    private fun blur(m: FloatArray) {
        val r = kernel.size / 2
        for (y in 0 until n) {
            for (x in 0 until n) {
                var acc = 0f
                for (j in max(-r, -x)..min(r, n - 1 - x)) acc += kernel[j + r] * m[y * n + x + j]
                tmp[y * n + x] = acc
            }
        }
        for (y in 0 until n) {
            for (x in 0 until n) {
                var acc = 0f
                for (j in max(-r, -y)..min(r, n - 1 - y)) acc += kernel[j + r] * tmp[(y + j) * n + x]
                m[y * n + x] = acc
            }
        }
    }

    companion object {
        private const val ALPHA_MASK = -0x1000000  // 0xFF000000

        /** makeup.metrics.FIDELITY_REGIONS: the masks' order, the regions the gate's ranges are given for. */
        val REGIONS = arrayOf("eyes", "lips", "skin", "brows")

        /** The card's `"regions"` (polygons in fill order, label values, eye zone reach), masks at [feather]. */
        fun fromModelCard(json: String, size: Int, feather: Double): RegionMasks {
            val regions = JSONObject(json).getJSONObject("regions")
            val names = regions.getJSONObject("labels")
            val labelOf = names.keys().asSequence().associateWith { names.getInt(it) }
            val parts = regions.getJSONArray("fill")
            val fill = List(parts.length()) { i ->
                val part = parts.getJSONObject(i)
                val ids = part.getJSONArray("points")
                labelOf.getValue(part.getString("label")) to IntArray(ids.length()) { ids.getInt(it) }
            }
            for (name in REGIONS) require(name in labelOf) { "regions.labels has no \"$name\"" }
            return RegionMasks(fill, labelOf, regions.getDouble("eye_reach"), feather, size)
        }

        /** From assets/model_card.json; throws with the reason when the card has no usable `"regions"`. */
        fun load(context: Context, size: Int, feather: Double): RegionMasks =
            fromModelCard(readModelCard(context), size, feather)

        fun readModelCard(context: Context): String =
            context.assets.open(Alignment.MODEL_CARD_ASSET).bufferedReader().use { it.readText() }
    }
}

/**
 * What a region-input model reads from the card's `io.region_input` (`export/report.py` `io_card`): the region
 * masks' names in input-channel order, after the [MakeupModel.CHANNELS] colour channels, and their feather.
 */
class RegionInput(val channels: List<String>, val feather: Double) {
    companion object {
        /** Null when the card's `"io"` has no `region_input` (an RGB-only model's card); throws when malformed. */
        fun fromModelCard(json: String): RegionInput? {
            val io = JSONObject(json).getJSONObject("io")
            if (!io.has("region_input") || io.isNull("region_input")) return null
            val ri = io.getJSONObject("region_input")
            val names = ri.getJSONArray("channels")
            val channels = List(names.length()) { names.getString(it) }
            require(channels.size == MakeupModel.REGION_CHANNELS && channels.toSet() == RegionMasks.REGIONS.toSet()) {
                "io.region_input.channels $channels: expected the ${MakeupModel.REGION_CHANNELS} masks of ${RegionMasks.REGIONS.joinToString()}"
            }
            val first = ri.getInt("first_channel")
            require(first == MakeupModel.CHANNELS) {
                "io.region_input.first_channel $first: the app packs the masks after the ${MakeupModel.CHANNELS} colour channels"
            }
            return RegionInput(channels, ri.getDouble("feather"))
        }

        /** From assets/model_card.json; a region-input model cannot run without it, so this throws with the reason. */
        fun load(context: Context): RegionInput = fromModelCard(RegionMasks.readModelCard(context))
            ?: throw IllegalStateException(
                "${MakeupModel.MODEL_ASSET} takes the face's region masks and ${Alignment.MODEL_CARD_ASSET} has no " +
                    "io.region_input: copy the model's own card (make android-assets)"
            )
    }
}
